"""Sweeps: search spaces (``search_spaces/*.yaml``) run as Ray Tune trials, recorded in the leaderboard."""
