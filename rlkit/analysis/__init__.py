"""Reading finished runs: multi-seed comparisons with confidence intervals (`rlkit compare`).

Pure numbers in, numbers out (`student_t`, `intervals`), plus reading `metrics.jsonl` from run
directories (`runs`) and the comparison plot (`plot`).  Imports nothing from the runtime, so a
comparison runs on any machine that holds the run directories.
"""
