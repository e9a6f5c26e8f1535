"""The impairment helper: a sidecar's main process that delays, drops, duplicates, reorders,
corrupts and rate-limits the traffic of the network namespace it owns (stdlib only).

Two backends behind one interface: the kernel's netem where it exists, else iptables
`statistic` + an NFQUEUE reader in userspace + tbf. Entry point: `python3 -m lab.shaper`.
"""
