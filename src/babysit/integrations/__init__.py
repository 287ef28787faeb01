"""Babysit inside other training frameworks; each module imports its framework only when imported itself.

    from babysit.integrations.lightning import Babysit     # needs `pip install babysit[lightning]`
    from babysit.integrations.huggingface import Babysit   # a TrainerCallback; needs `pip install babysit[hf]`

`import babysit` never imports these, so the frameworks stay optional extras.
"""
