"""Renderers: the run as console text, HTML, CSV, JSON and JUnit XML.

Every renderer reads only a RunResult (plus, for HTML, its Diagnosis and the
history Delta).  ``write_reports`` writes the files; ``report_command`` is
``fleet report``.
"""

from fleet.render.reports import FORMATS, parse_formats, report_command, write_reports

__all__ = ["FORMATS", "parse_formats", "report_command", "write_reports"]
