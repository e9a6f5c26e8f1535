"""A learner's own programs in the lab: what the lab reads out of programs that print no records.

`printed` picks socket addresses out of what a program prints; `diagnose` explains, one line
each, the classic mistakes that keep a multi-host socket program from working.
"""
