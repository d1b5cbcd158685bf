"""Pod-to-pod TCP throughput (iperf3): lab pods vs a plain veth pair and the kernel's own vxlan."""
