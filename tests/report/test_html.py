import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from babysit.report.html import Page


def test_page_escapes_user_strings_and_embeds_figures(tmp_path):
    page = Page("run <script>alert(1)</script>")
    sec = page.section("classes & names")
    sec.text("class '<b>cat</b>'")
    sec.table(["name", "value"], [["<img src=x onerror=alert(1)>", 0.123456]])
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3])
    sec.figure(fig, caption="a <curve>")
    out = page.write(tmp_path / "r.html").read_text()
    assert "<script>alert" not in out and "&lt;script&gt;" in out
    assert "<img src=x" not in out and "0.1235" in out
    assert out.count("data:image/png;base64,") == 1
    assert "http://" not in out and "https://" not in out  # self-contained
