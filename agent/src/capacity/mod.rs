//! Capacity detection: CPU, memory, disk, cgroup limits, GPUs and TEE devices.
