"""The run as a web page: `lab report` writes one self-contained HTML file per run (and `lab diff`
one comparing two runs) that opens offline, fetches nothing and draws everything as SVG."""

from lab.html.page import REPORT_FILE, write_report

__all__ = ["REPORT_FILE", "write_report"]
