"""The report's product-quality page: populations, cytometry, soft-sensor estimates with their
bands and probe re-standardisations, from a small synthetic run written by the real historian."""
from __future__ import annotations

import math
import re
from pathlib import Path

from controller import report
from controller.runtime.historian import Historian, RunInfo
from drivers.contract.reading import Quality, Reading

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DAY_S = 86400.0
PERIOD_S = 600.0
DAYS = 4


def _sampled(value: float, drawn_s: float) -> Reading:
    return Reading(value, "", drawn_s, Quality.GOOD)


def _write_run(path: Path, *, product: bool) -> Path:
    hist = Historian(path, RunInfo("product-run", "2026-12-02T08:00:00+00:00", 7, PERIOD_S,
                                   "", [("A", "sim://A")]))
    outputs = {"heater_pct": 20.0}
    for tick in range(int(DAYS * DAY_S / PERIOD_S)):
        t_s = tick * PERIOD_S
        d = t_s / DAY_S
        drawn = math.floor(d) * DAY_S
        readings = {"temperature_c": Reading(37.0, "degC", t_s),
                    "viable_cells_per_ml": _sampled(1e5 * math.exp(drawn / DAY_S), drawn)}
        if product:
            readings["cd34_pct"] = _sampled(90.0 - 10 * drawn / DAY_S, drawn)
            readings["cd34_cd90_pct"] = _sampled(10.0 - drawn / DAY_S, drawn)
        hist.record_tick("A", t_s, readings, outputs)
        if product and tick % 6 == 0:
            hist.record_diagnostics("A", t_s, {
                "primitive_cells_per_ml": 1e4 * math.exp(0.2 * d),
                "progenitor_cells_per_ml": 8e4 * math.exp(0.5 * d),
                "differentiated_cells_per_ml": 1e4 * math.exp(0.9 * d),
                "viable_cells_per_ml": 1e5 * math.exp(d), "cd34_fraction": 0.9 - 0.1 * d,
                "primitive_fraction": 0.1 - 0.01 * d, "growth_rate_per_d": 0.5,
                "inhibitor_ng_per_ml": 0.1 * d})
            hist.record_estimates("A", t_s, {
                "est_viable_cells_per_ml": (1.05e5 * math.exp(d), 1e4),
                "est_growth_rate_per_d": (0.48, 0.05),
                "est_inhibitor_ng_per_ml": (0.11 * d, 0.02),
                "est_primitive_fraction": (0.1 - 0.01 * d, 0.01)})
    if product:
        hist.record_event("A", 1.5 * DAY_S, "standardisation", "ph: reference 7.28 ...",
                          {"probe": "ph", "correction": 0.0})
        hist.record_event("A", 2.25 * DAY_S, "standardisation",
                          "ph re-standardised: correction +0 -> -0.021 pH",
                          {"probe": "ph", "restandardised": True, "correction": -0.021})
    summary = {"reactors": {"A": {
        "fold_expansion": 54.6,
        "product": {"total_fold_expansion": 54.6, "cd34_fraction": 0.123,
                    "cd34_fold_expansion": 7.5, "primitive_fold_expansion": 1.9},
        "soft_sensor": {"growth_rate_rmse_per_d": 0.0412, "viable_density_mape": 3.21,
                        "inhibitor_mape": 12.5}}}} if product else None
    hist.close(summary)
    return path


def test_the_product_page_shows_the_figures_the_plot_and_the_restandardisations(
        tmp_path: Path) -> None:
    index = report.write_report(_write_run(tmp_path / "run.sqlite", product=True),
                                tmp_path / "report")
    page = index.parent / "product.html"
    text = page.read_text(encoding="utf-8")
    assert "href='product.html'" in index.read_text(encoding="utf-8")
    for expected in ("54.6", "12.3 %", "7.5", "1.9", "0.0412", "3.21", "12.5"):
        assert expected in text, expected
    # Only the re-standardisation is listed, not every comparison with the reference.
    rows = re.findall(r"<tr><td>(\d+ d [\d:]+)</td><td class='num'>([\d.]+)</td><td>ph</td>",
                      text)
    assert rows == [("2 d 06:00:00", "2.250")], rows
    assert "-0.021" in text
    (image,) = re.findall(r"<img src='([^']+)'", text)
    assert image == "A-product.png"
    assert (index.parent / image).read_bytes()[:8] == PNG_MAGIC


def test_a_run_without_product_data_says_so_and_plots_nothing(tmp_path: Path) -> None:
    index = report.write_report(_write_run(tmp_path / "run.sqlite", product=False),
                                tmp_path / "report")
    text = (index.parent / "product.html").read_text(encoding="utf-8")
    assert "<img" not in text and "Nothing to plot" in text
    assert "No product-quality figures" in text and "No probe was re-standardised" in text
    assert not (index.parent / "A-product.png").exists()
