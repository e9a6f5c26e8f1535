"""The capture helper: records the lab networks' packets with tcpdump, one pcap file per network.

Runs in its own container with the host's network namespace, so it can open the run's bridges
(where every frame between the lab's containers passes), and records only those interfaces.
Standard library only, like the other in-container programs.
"""
