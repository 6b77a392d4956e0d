"""The load view's pieces: phase bands from a real log, gaps kept as gaps, labels that never share
a row with a neighbour, predicted levels that do not flatten the chart."""

from pathlib import Path

from zoe_panel.engine.loadlog import parse_lines
from zoe_panel.telemetry.base import Sample
from zoe_panel.ui.loadview import (
    MIB,
    Band,
    PredictedPart,
    bands,
    label_rows,
    load_figure,
    predicted_parts,
    with_gaps,
)

LOGS = Path(__file__).parent.parent / "data" / "logs"


def gemma_events():  # type: ignore[no-untyped-def]
    # one log line per 0.1 s from t = 100
    lines = (LOGS / "llama-server-0c1e570-gemma3-swa.log").read_text().splitlines()
    return parse_lines((100.0 + i / 10, line) for i, line in enumerate(lines))


def sample(t: float, rss_mib: float | None = 100.0) -> Sample:
    s = Sample(t, "host", 16 << 30, 4 << 30, 12 << 30, 0, cpu_pct=50.0)
    return s.with_engine(int(rss_mib * MIB) if rss_mib is not None else None)


def test_bands_follow_the_load_in_order_and_name_each_cache() -> None:
    evs = gemma_events()
    got = bands(evs, started_at=100.0, ended_at=evs[-1].t + 0.5, failed=False)
    labels = [b.label for b in got]
    assert labels == ["weights", "KV cache (non-SWA)", "KV cache (SWA)", "compute", "warm-up", "READY"]
    assert all(a.end <= b.start + 1e-9 for a, b in zip(got, got[1:], strict=False))  # no overlap in time
    assert got[0].start == 0.0 and got[-1].end - got[-1].start == 3.0


def test_a_failed_load_names_the_phase_that_failed() -> None:
    text = [
        "load_tensors:   CPU_Mapped model buffer size =    92.11 MiB",
        "llama_context:        CPU  output buffer size =     0.19 MiB",
        "ggml_backend_cpu_buffer_type_alloc_buffer: failed to allocate buffer of size 96636764160",
    ]
    evs = parse_lines((10.0 + i, line) for i, line in enumerate(text))
    got = bands(evs, started_at=10.0, ended_at=13.0, failed=True)
    assert [b.label for b in got] == ["weights", "KV cache: failed", "FAILED"]
    assert got[1].kind == "FAILED" and got[-1].kind == "FAILED"


def test_gaps_stay_gaps() -> None:
    samples = [sample(t / 10) for t in range(10)] + [sample(5.0 + t / 10) for t in range(10)]
    points = with_gaps(samples)
    assert points.count(None) == 1 and points[10] is None  # one break, where sampling stopped
    fig = load_figure(samples, [], started_at=0.0, ended_at=6.0)
    rss = next(t for t in fig.data if t.name == "engine memory (RSS)")
    assert rss.connectgaps is False and None in list(rss.x) and None in list(rss.y)
    cpu = next(t for t in fig.data if t.name == "CPU %")
    assert cpu.yaxis == "y2"  # CPU on its own small axis


def test_labels_of_neighbouring_bands_go_on_different_rows() -> None:
    # four short phases within a quarter of a second, as on a small model
    phases = [Band(0, 2.0, "weights", "weights"), Band(2.0, 2.05, "KV cache (non-SWA)", "KV cache")]
    phases += [Band(2.05, 2.1, "KV cache (SWA)", "KV cache"), Band(2.1, 2.2, "compute", "compute")]
    phases += [Band(2.2, 2.4, "warm-up", "warm-up"), Band(2.5, 5.5, "READY", "READY")]
    rows = label_rows(phases, span_s=6.0)
    assert len(set(rows[1:5])) == 4  # the four close labels: four rows
    assert rows[0] == 0 and rows[5] == 0  # far apart: back on the first row


def test_predicted_levels_stack_and_a_huge_cap_is_written_not_drawn() -> None:
    est = {
        "weights_bytes": 200 * MIB,
        "repack_bytes": 12 * MIB,
        "kv_bytes": 100 * MIB,
        "at_ready_bytes": 400 * MIB,
        "after_load_bytes": 6000 * MIB,
    }
    parts = predicted_parts(est)
    assert [p.label for p in parts][-1] == "after-READY caps = total"
    assert sum(p.bytes for p in parts) == 6400 * MIB
    fig = load_figure([sample(t / 10, 390) for t in range(30)], [], started_at=0.0, ended_at=2.0, predicted=parts)
    lines = [s for s in fig.layout.shapes if s.type == "line"]
    assert [round(s.y0) for s in lines] == [212, 312, 400]  # cumulative levels, in MiB
    assert any("above the scale" in a.text and "6400 MiB" in a.text for a in fig.layout.annotations)
    small = load_figure(
        [sample(0.0, 390), sample(0.1, 390)],
        [],
        started_at=0.0,
        ended_at=0.1,
        predicted=[PredictedPart("weights", 300 * MIB), PredictedPart("after", 100 * MIB)],
    )
    assert len([s for s in small.layout.shapes if s.type == "line"]) == 2


def test_the_unvalidated_figures_are_valid_plotly() -> None:
    """The builders skip plotly's validation for speed; here every property they set goes through it."""
    import datetime

    import plotly.graph_objects as go

    from zoe_panel.ui.charts import Marker, memory_figure

    evs = gemma_events()
    samples = [sample(100.0 + t / 10, 100 + t) for t in range(60)]
    parts = [PredictedPart("weights", 90 * MIB), PredictedPart("KV cache", 40 * MIB)]
    load = load_figure(samples, evs, started_at=100.0, ended_at=105.0, predicted=parts)
    checked = go.Figure(load.to_dict())  # raises ValueError on any wrong property
    rects = [s for s in checked.layout.shapes if s.type == "rect"]
    assert len(rects) == len(bands(evs, started_at=100.0, ended_at=105.0, failed=False))
    assert {a.text for a in checked.layout.annotations} >= {"weights", "READY", "+ KV cache: 130 MiB"}
    assert checked.layout.yaxis.domain == (0.2512, 1.0) and checked.layout.xaxis.matches == "x2"
    mem = memory_figure(samples, markers=[Marker(101.0, "weights"), Marker(104.0, "READY", "ready")],
                        predicted_total_bytes=200 * MIB)  # fmt: skip
    checked = go.Figure(mem.to_dict())
    assert [t.name for t in checked.data][:2] == ["RAM used", "RAM available"]
    assert checked.data[-1].x[1] == datetime.datetime.fromtimestamp(104.0)
    assert len(checked.layout.shapes) == 3 and "predicted engine total" in checked.layout.annotations[0].text


def test_the_monitor_redraws_each_second_only_where_it_shows() -> None:
    from zoe_panel.ui.monitor_view import WINDOWS, refresh_period

    paces = [refresh_period(w, loading=False) for w in WINDOWS.values()]
    assert paces == [1.0, 2.0, 6.0, 10.0]  # 1 min, 5 min, 15 min, 1 h: ~150 redraws a window, 1..10 s
    assert all(refresh_period(w, loading=True) == 1.0 for w in WINDOWS.values())  # a load: every second
