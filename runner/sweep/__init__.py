"""Sweeps: search spaces (shipped in ``runner/search_spaces/``, or the user's own) assembled by ``assemble.build_sweep``
and run as Ray Tune trials, recorded in the leaderboard."""
