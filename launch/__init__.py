"""Cluster launch helpers: start Ray heads/workers (shell scripts) and submit recipes as Ray Jobs
(`python -m launch.submit`). See docs/cluster.md."""
