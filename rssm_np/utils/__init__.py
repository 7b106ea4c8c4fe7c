"""Plumbing the core leans on but a first reader skips: argument checks (validate), nested-dict
helpers (trees), the traced array helpers of the hot path (speed), safe files and polite stops
(files), and command-line flags (cli)."""
