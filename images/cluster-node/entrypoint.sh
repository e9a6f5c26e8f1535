#!/bin/sh
# A cluster node: a Docker daemon inside a container (Docker-in-Docker), one per swarm node.
#
# The node runs with every capability but CAP_SYS_RESOURCE (hosts whose bounding set lacks it
# refuse --privileged), so Docker mounts /sys and the cgroup hierarchies read-only: remount
# them read-write, or the inner daemon cannot create its containers' cgroups. Docker made them
# read-only per mount point, so a bind remount is what undoes it where a plain one is "busy".
set -eu
writable() { mount -o remount,rw "$1" 2>/dev/null || mount -o remount,bind,rw "$1"; }
writable /sys
for hierarchy in /sys/fs/cgroup/*; do
    [ -L "$hierarchy" ] || writable "$hierarchy"
done
# Services use the images loaded into the node; without this a deploy first tries a registry
# (a long stall when none answers).
export DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1
# Plain TCP on 2375: the nodes sit on an internal network of the lab's own, reachable only from
# this host, and the lab drives each node's daemon through it.
exec dockerd --host=unix:///var/run/docker.sock --host=tcp://0.0.0.0:2375 --tls=false \
    --storage-driver=overlay2 "$@"
