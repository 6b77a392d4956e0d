"""Benchmark 19: how soon a page shows its content on a warm panel, in a real browser (Chromium).

Each load is a new tab (a new Streamlit session: what a visitor or a reload gets) in a browser that
has opened the panel before (its scripts cached), on a panel that has warmed up (/zoe/ready). Timed from the
navigation to the element that makes the page usable: the Engine page's form (the Model box), its
Start button (the whole page, estimate and backend checks included), the Models page's library
table. Baseline, in the same run: the Audit page, nearly nothing but a title (Streamlit's own floor
on this machine: the script run, the websocket round trips, the first render)."""

from __future__ import annotations

from pathlib import Path

from common import Table, chromium, median, p90, scratch_runtime, serve_panel, stop_panel

# (row, path, the element that makes the page usable)
TARGETS = (
    ("Audit page: title (baseline)", "/audit", "h1"),
    ("Engine page: the form (Model box)", "/engine", ".st-key-engine-model"),
    ("Engine page: Start button", "/engine", ".st-key-engine-start"),
    ("Engine page: memory estimate", "/engine", ".st-key-engine-estimate"),
    ("Models page: library table", "/models", "[data-testid='stDataFrame']"),
)
PAGES = tuple(dict.fromkeys(path for _, path, _ in TARGETS))

# ms from the navigation's start (performance.now()) to the first moment each selector matches
FIRST_SEEN = """(sels) => new Promise(resolve => {
  const seen = {};
  const look = () => {
    for (const s of sels) if (!(s in seen) && document.querySelector(s)) seen[s] = performance.now();
    if (Object.keys(seen).length === sels.length) resolve(seen); else setTimeout(look, 5);
  };
  look();
})"""


def first_seen(ctx, url: str, selectors: list[str]) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Open a new tab (a new Streamlit session) in a browser that has opened the panel before; seconds
    from the navigation's start to each selector's first appearance."""
    page = ctx.new_page()
    try:
        page.set_default_timeout(120_000)
        page.goto(url, wait_until="commit")
        return {k: v / 1000 for k, v in page.evaluate(FIRST_SEEN, selectors).items()}
    finally:
        page.close()


def main(smoke: bool = False) -> Table:
    from playwright.sync_api import sync_playwright

    n = 1 if smoke else 9
    t = Table(
        "19. First paint on a warm panel (a new tab = a new session each load, real Chromium, engine stopped)",
        ["page: usable when", "median s", "p90 s", "ratio vs baseline"],
    )
    rt = scratch_runtime()
    try:
        home = Path(rt.settings.home)
        proc, url = serve_panel(home, rt.settings.engine_port)
        try:
            with sync_playwright() as pw:
                browser = chromium(pw)
                ctx = browser.new_context(viewport={"width": 1300, "height": 900})
                try:
                    sels = {path: [sel for _, p, sel in TARGETS if p == path] for path in PAGES}
                    for path in PAGES:  # warm: the browser's cache of the panel's scripts
                        first_seen(ctx, url + path, sels[path])
                    times: dict[str, list[float]] = {row: [] for row, _, _ in TARGETS}
                    for _ in range(n):  # interleaved, so a slow moment of the machine hits every row
                        for path in PAGES:
                            got = first_seen(ctx, url + path, sels[path])
                            for row, p, sel in TARGETS:
                                if p == path:
                                    times[row].append(got[sel])
                    stop_panel(proc)
                    # the first visitor of a panel just started (ready: /zoe/ready, or up for an older panel)
                    first: list[float] = []
                    for _ in range(1 if smoke else 4):
                        proc, url = serve_panel(home, rt.settings.engine_port)
                        first.append(first_seen(ctx, url + "/engine", [".st-key-engine-model"])[".st-key-engine-model"])
                        stop_panel(proc)
                finally:
                    browser.close()
        finally:
            stop_panel(proc)
        base = median(times[TARGETS[0][0]])
        for row, _, _ in TARGETS:
            t.add(row, round(median(times[row]), 2), round(p90(times[row]), 2), round(median(times[row]) / base, 2))
        t.add("Engine page: the form, first visit after a (re)start", round(median(first), 2), round(p90(first), 2),
              round(median(first) / base, 2))  # fmt: skip
        t.notes.append(
            f"{n} loads each, interleaved; seconds from the navigation's start to the element's first appearance. "
            "The panel, Chromium and nothing else share the 2 cores; the engine is stopped (the Engine page's usual "
            "first view)."
        )
    finally:
        rt.close()
    return t


if __name__ == "__main__":
    print(main().markdown())
