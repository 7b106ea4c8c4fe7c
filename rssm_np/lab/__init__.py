"""The lab: everything that measures, compares, plans, plays, benchmarks and draws.

It imports the core (rssm_np's world, layers, distributions, model, adam, training); the core never
imports it. Each command is `python -m rssm_np.lab.<name> --help`.
"""
