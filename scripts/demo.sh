#!/usr/bin/env bash
# The calico-lab demo (`make demo`, after `make install`): a 3-node Calico cluster in network
# namespaces, pods in two namespaces, the connectivity matrix before and after Kubernetes
# NetworkPolicies and a platform tier above them, a pod reaching the `outside` host beyond the
# lab's router, why a denied connection is denied (`calico-lab explain`, answered by the policy
# agents from the rules they programmed; `calico-lab flows`, the agents' flow logs) and what a
# staged policy would change. Nothing outside the lab's own namespaces is touched;
# `calico-lab down` removes it.
#
# CALICO_LAB_KUBERNETES=1 runs the same demo on a real Kubernetes cluster (`calico-lab up
# --kubernetes`: kube-apiserver, kubelets, containerd, kube-proxy; Calico from its hosted install),
# which needs `make kube` and `make images` first.
set -euo pipefail

cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
export PATH="$PWD/$VENV/bin:$PATH"
export CALICO_LAB=${CALICO_LAB:-demo}
PORT=80
UP=(--nodes 3)
if [ "${CALICO_LAB_KUBERNETES:-0}" = 1 ]; then
    UP+=(--kubernetes)
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "demo: calico-lab makes network namespaces; run as root (sudo make demo)" >&2
    exit 1
fi
command -v calico-lab >/dev/null || { echo "demo: calico-lab not found; run make install" >&2; exit 1; }

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# Probe until every pod reaches every pod (the policy agent programs new pods asynchronously).
wait_all_connected() {
    for _ in $(seq 1 60); do
        if ! calico-lab matrix --port "$PORT" --timeout 0.5 -o json | grep -q false; then
            return 0
        fi
        sleep 0.5
    done
    echo "demo: pods did not all connect within 30s (see calico-lab status)" >&2
    return 1
}

# Probe until SRC can no longer reach DST (policy takes effect asynchronously).
wait_denied() {
    for _ in $(seq 1 60); do
        if ! calico-lab probe "$1" "$2" --port "$PORT" --timeout 0.5 >/dev/null; then
            return 0
        fi
        sleep 0.5
    done
    echo "demo: $1 -> $2 still connects after 30s" >&2
    return 1
}

# Probe until two matrices in a row agree (every policy has reached every node).
wait_stable() {
    local last="" now
    for _ in $(seq 1 30); do
        now=$(calico-lab matrix --port "$PORT" --timeout 0.5 -o json)
        [ "$now" = "$last" ] && return 0
        last=$now
        sleep 0.5
    done
}

if [ "${CALICO_LAB_KUBERNETES:-0}" = 1 ]; then
    say "Bringing up a 3-node Kubernetes lab ($CALICO_LAB): control plane, kubelets, then Calico's hosted install"
else
    say "Bringing up a 3-node lab ($CALICO_LAB): etcd, then calico-node (felix + BIRD) per node"
fi
calico-lab up "${UP[@]}"

# A second `make demo` starts from the same place: no policies from the last run.
calico-lab delete -f examples/staged.yaml -f examples/tiers.yaml -f examples/allow.yaml \
    -f examples/default-deny.yaml \
    >/dev/null 2>&1 || true

say "Namespaces shop and dev, four pods (each serves TCP and UDP port $PORT)"
calico-lab apply -f examples/namespaces.yaml -f examples/pods.yaml
wait_all_connected
calico-lab status
if [ "${CALICO_LAB_KUBERNETES:-0}" = 1 ]; then
    calico-lab kubectl get pods -A -o wide
fi

say "Connectivity with no policy: every pod reaches every pod, across nodes"
calico-lab matrix --port "$PORT"

# Ask the outside host (203.0.113.1, beyond the lab's router) who it sees; natOutgoing is
# programmed asynchronously, so ask for a few seconds. Never fails the demo: it shows what happened.
show_outside() {
    local pod=$1 node_addr=$2 out=""
    for _ in $(seq 1 10); do
        if out=$(calico-lab probe "$pod" outside --port "$PORT" --timeout 0.5); then
            echo "$out"
            if [ "${out##* }" = "$node_addr" ]; then
                echo "  (its node's address: natOutgoing masqueraded the pod's traffic)"
            fi
            return 0
        fi
        sleep 0.5
    done
    echo "$out"
    echo "  (no answer: the router drops pod addresses, and this agent did not masquerade"
    echo "   $pod's traffic to its node's address; natOutgoing needs the agent's masquerade)"
}

say "Reaching the outside host 203.0.113.1 beyond the lab's router (it answers the source it saw)"
node_seen=$(calico-lab probe node1 outside --port "$PORT")
echo "$node_seen"
show_outside shop/frontend "${node_seen##* }"

say "Default deny for ingress in shop (examples/default-deny.yaml) plus the allowed paths (examples/allow.yaml)"
sed -n '1,3p' examples/default-deny.yaml
sed -n '1,5p' examples/allow.yaml
calico-lab apply -f examples/default-deny.yaml -f examples/allow.yaml
wait_denied dev/tester shop/db
wait_stable

say "Connectivity with the policies: only the allowed paths remain"
calico-lab matrix --port "$PORT"

say "A platform tier before the application policies (examples/tiers.yaml): dev never reaches db"
sed -n '1,10p' examples/tiers.yaml
calico-lab apply -f examples/tiers.yaml
wait_denied dev/tester shop/db
wait_stable
echo "shop's allow-db-from-everywhere opens db to every namespace; the platform tier's Deny for"
echo "dev comes first, and its Pass hands everything else to the application policies:"
calico-lab matrix --port "$PORT"

say "Why is dev/tester denied? A probe, then calico-lab explain (the agents answer from their rules)"
calico-lab probe dev/tester shop/db --port "$PORT" || true
calico-lab explain dev/tester shop/db --port "$PORT"
echo
echo "and an allowed path, with the hit counters of the rule that allowed it:"
calico-lab explain shop/backend shop/db --port "$PORT" | head -3

say "Flow logs: each node's agent logs denied flows (nft log group -> NFLOG, rate-limited)"
# the header and the last three records of dev/tester -> shop/db (the newest: the platform tier's)
calico-lab flows --action deny \
    | awk 'NR == 1 { print; next } /dev\/tester +shop\/db/ { last[n++ % 3] = $0 }
           END { for (i = (n > 3 ? n - 3 : 0); i < n; i++) print last[i % 3] }'

say "A staged policy (examples/staged.yaml): what if shop deleted allow-db-from-everywhere?"
sed -n '1,4p' examples/staged.yaml
calico-lab apply -f examples/staged.yaml
sleep 1  # the agents program the staged walk; verdicts do not change
calico-lab matrix --port "$PORT"
echo "its impact on the flows just seen (allowed flows into db now carry their staged verdict):"
calico-lab flows -o json \
    | calico-lab exec node1 -- calicoctl policy impact allow-db-from-everywhere -n shop --flows -

cat <<TXT

Explore further:
  calico-lab status                                      nodes, subnets, BGP sessions, tunnels, pods
  calico-lab probe dev/tester outside --port $PORT          outside answers the source address it saw
  calico-lab exec outside -- ip addr                     the host beyond the lab's router
  calico-lab exec node1 -- calicoctl node status         BGP mesh as seen from node1
  calico-lab exec node1 -- calicoctl get networkpolicy -A -o wide
  calico-lab exec node1 -- calicoctl get tiers -o wide   tiers in evaluation order
  calico-lab exec node1 -- calicoctl get workloadendpoints -A
  calico-lab exec node2 -- birdc show route              routes BIRD learnt
  calico-lab exec node1 -- nft list table inet calico    the policy agent's rules
  calico-lab probe dev/tester shop/frontend --port $PORT
  calico-lab explain dev/tester shop/frontend --port $PORT  why allowed or denied, rule by rule
  calico-lab exec node1 -- calicoctl get gnp platform.dev-never-reaches-db -o wide
                                                         rule hit counters, per node
  calico-lab flows --follow                              flows as the agents log them
  calico-lab exec node1 -- calicoctl policy promote allow-db-from-everywhere -n shop
                                                         enforce the staged policy
  calico-lab label pod dev/tester app=frontend           labels change live
  calico-lab matrix --port $PORT --protocol UDP
  calico-lab delete -f examples/default-deny.yaml
  calico-lab down                                        remove everything the lab made
  calico-lab up --subnets 2 --vxlan Always               nodes on two subnets behind a router
  calico-lab up --kubernetes                             a real Kubernetes cluster (make kube images)
  calico-lab kubectl get pods -A -o wide                 its API server (a --kubernetes lab)
TXT
