"""The capture helper: records the lab network's packets with tcpdump into a pcap file.

Runs in its own container with the host's network namespace, so it can open the run's bridge
(where every frame between the lab's containers passes), and records only that interface.
Standard library only, like the other in-container programs.
"""
