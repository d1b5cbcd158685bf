"""The WorkloadEndpoints the CNI plugin writes (with ``validate=False``, to keep its imports small)
pass the model, so the agent, which parses everything it reads with the model, programs them.

Generated over what a pod can bring: Kubernetes names (node, namespace, pod, service account),
pod labels, named container ports, the container id a runtime gives (hex), IPv4/IPv6 addresses."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from calico.calc import validation as calc_validation
from calico.cni import endpoint
from calico.model import validation

label = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?\Z")
subdomain = st.lists(label, min_size=1, max_size=3).map(".".join).filter(lambda s: len(s) <= 100)
label_values = st.from_regex(r"\A([A-Za-z0-9][-A-Za-z0-9_.]{0,20}[A-Za-z0-9])?\Z")
label_keys = st.one_of(label, st.tuples(subdomain, label).map("/".join))
ports = st.lists(
    st.fixed_dictionaries(
        {
            "name": st.from_regex(r"\A[a-z]([-a-z0-9]{0,13}[a-z0-9])?\Z"),
            "protocol": st.sampled_from(["TCP", "UDP", "SCTP"]),
            "port": st.integers(1, 65535),
        }
    ),
    max_size=3,
    unique_by=lambda p: (p["name"], p["protocol"]),
)


@settings(max_examples=150, deadline=None)
@given(
    node=subdomain,
    namespace=label,
    pod=st.one_of(st.just(""), subdomain),
    container_id=st.from_regex(r"\A[0-9a-f]{1,64}\Z"),
    labels=st.dictionaries(label_keys, label_values, max_size=4),
    service_account=st.one_of(st.none(), subdomain),
    ports=ports,
    ips=st.lists(
        st.one_of(
            st.ip_addresses(v=4).map(lambda a: f"{a}/32"),
            st.ip_addresses(v=6).map(lambda a: f"{a}/128"),
        ),
        min_size=1,
        max_size=2,
    ),
)
def test_cni_endpoints_pass_the_model(
    node: str,
    namespace: str,
    pod: str,
    container_id: str,
    labels: dict[str, str],
    service_account: str | None,
    ports: list[dict[str, object]],
    ips: list[str],
) -> None:
    w = endpoint.Workload(
        node=node, container_id=container_id, ifname="eth0", namespace=namespace, pod=pod
    )
    w.labels, w.ports = labels, ports
    w.service_account = service_account if pod else None
    wep = endpoint.build(
        w, network="k8s-pod-network", host_if="cali0123456789a", mac="ee:ee:ee:ee:ee:ee",
        ip_networks=ips,
    )  # fmt: skip
    validation.validate(wep)
    item = calc_validation.workload_endpoint(f"wep:{namespace}/x", namespace, wep)
    assert item.iface == "cali0123456789a"
    assert len(item.ports) == len(ports)
