"""Docker Swarm, the lab's second engine (a run across several hosts), and `lab cluster`, a real
swarm of Docker-in-Docker nodes on one machine to run and test it on.

- `engine.py`: `SwarmEngine` and `SwarmStack`, the `Engine` and `Project` of a swarm;
- `stack.py`: a run's compose file as a stack (pure);
- `cluster.py`: the Docker-in-Docker nodes, the swarm they form, the node image loaded into them;
- `docker_api.py`: connections to daemons other than the host's (a manager, a node).
"""
