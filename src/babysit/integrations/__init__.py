"""Babysit inside other training frameworks; each module imports its framework only when imported itself.

    from babysit.integrations.lightning import Babysit     # needs `pip install babysit[lightning]`

`import babysit` never imports these, so the frameworks stay optional extras.
"""
