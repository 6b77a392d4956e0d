"""History: every engine run with predicted vs measured memory, its load chart, comparisons."""

import streamlit as st

from zoe_panel.runtime import get_runtime
from zoe_panel.ui.boot import guard
from zoe_panel.ui.history_view import compare_runs, run_chart, runs_table

guard()

rt = get_runtime()
st.title("History")

rows = runs_table(rt)
if not rows:
    st.info("No engine runs recorded yet. Start one on the Engine page.")
    st.stop()

ids = [r["run"] for r in rows]
st.subheader("A run's load")
chosen = st.selectbox("Run", ids, key="history-run")
run_chart(rt, chosen)

st.subheader("Compare two runs")
c1, c2 = st.columns(2)
a = c1.selectbox("Run A", ids, key="history-a")
b = c2.selectbox("Run B", ids, index=min(1, len(ids) - 1), key="history-b")
compare_runs(rt, a, b)
