"""Figures, the static report and the live web dashboard of runs. Reads the store; never drives a search."""

from dashboards.figures import comparison_figure, save_run_figures, toy_figure
from dashboards.report import write_report
from dashboards.server import make_server, serve

__all__ = ["comparison_figure", "make_server", "save_run_figures", "serve", "toy_figure", "write_report"]
