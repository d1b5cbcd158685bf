#!/usr/bin/env bash
# build-kube.sh (`make kube`): Kubernetes v1.20.2 for the lab's real clusters, built here from Debian
# bookworm's own `kubernetes` source package, with Debian's Go 1.19 and the tree's vendor/ directory.
#
#   $KUBE_DIR/bin/   kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy (built)
#                    kubectl (unpacked from Debian's kubernetes-client .deb, which is not installed:
#                    on some images /usr/bin/kubectl belongs to another package)
#   $KUBE_DIR/work/  apt state for the source download, the unpacked tree, GOPATH, Go cache, logs
#
# KUBE_DIR defaults to /var/cache/calico-py/kube/v1.20.2: outside the checkout, so a fresh clone (CI)
# reuses it. A second run finds every binary reporting v1.20.2 and does nothing; --force rebuilds.
# Nothing of the machine's apt configuration changes: the source package is fetched with a private
# apt state (a deb-src twin of the machine's Debian entries) under work/apt.
#
# Go 1.19 (bookworm's) and the 1.20 tree need three things, none of them a change to Kubernetes code:
#  - GOPATH mode. `go build -mod=vendor` refuses the tree ("updates to go.mod needed"): its
#    vendor/modules.txt spells replaced modules as `# path => path version`, which Go >= 1.17 reads
#    as a module without a version. Kubernetes 1.20 itself builds in GOPATH mode (GO111MODULE=off,
#    k8s.io/kubernetes linked into a GOPATH), as does Debian's packaging; so do we. Every dependency
#    still comes from vendor/.
#  - reflect2 1.0.2 instead of the vendored 1.0.1. 1.0.1 links to reflect.mapiterinit with its
#    pre-Go-1.18 signature: it compiles (linkname signatures are unchecked) and kube-apiserver dies
#    with "fatal error: fault" the first time json-iterator walks a map (a labelled object pretty-
#    printed). 1.0.2 is upstream's fix with the same API; Debian packages it
#    (golang-github-modern-go-reflect2-dev), and its files replace the vendored ones.
#  - pkg/generated/openapi/zz_generated.openapi.go, which the tarball lacks (kube-apiserver does not
#    compile without it). Upstream's Makefile generates it with the vendored openapi-gen over every
#    package tagged `+k8s:openapi-gen=`; we run the same tool on the same inputs and check, as that
#    Makefile does, that its API-rule report equals api/api-rules/violation_exceptions.list.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
KUBE_VERSION=v1.20.2
KUBE_COMMIT=faecb196815e248d3ecfb03c680a4507229c2a56 # upstream's tag v1.20.2
KUBE_DIR=${KUBE_DIR:-/var/cache/calico-py/kube/$KUBE_VERSION}
BIN=$KUBE_DIR/bin
WORK=$KUBE_DIR/work
LOGS=$WORK/logs
GO=/usr/lib/go-1.19/bin/go
SERVERS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)
FORCE=0
[ "${1:-}" = "--force" ] && FORCE=1

say() { echo "build-kube: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root (it installs Debian packages)"

# reports BINARY: true when $BIN/BINARY exists and says it is $KUBE_VERSION
reports() {
    local out
    [ -x "$BIN/$1" ] || return 1
    if [ "$1" = kubectl ]; then out=$("$BIN/$1" version --client --short 2>/dev/null || true)
    else out=$("$BIN/$1" --version 2>/dev/null || true); fi
    [[ $out == *"$KUBE_VERSION"* ]]
}

# --------------------------------------------------------------------------------- private apt state
APT_DIR=$WORK/apt
apt_private() {  # apt-get with sources, lists and cache under $APT_DIR only
    apt-get -q -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$APT_DIR/sources" \
        -o Dir::State::Lists="$APT_DIR/lists" -o Dir::Cache="$APT_DIR/cache" \
        -o APT::Sandbox::User=root "$@"
}

# the machine's Debian entries (deb822 files signed by Debian's keyring, else one-line deb lines),
# as both deb and deb-src
write_sources() {
    local out=$APT_DIR/sources/debian.sources f found=0
    mkdir -p "$APT_DIR/sources" "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial"
    : >"$out"
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && grep -q debian-archive-keyring "$f" || continue
        sed 's/^Types:.*/Types: deb deb-src/' "$f" >>"$out"
        echo >>"$out"
        found=1
    done
    if [ $found -eq 0 ] && [ -f /etc/apt/sources.list ]; then
        rm -f "$out"
        out=$APT_DIR/sources/debian.list
        grep -E '^deb [^#]*debian' /etc/apt/sources.list | sed 'p; s/^deb /deb-src /' >"$out" || true
    fi
    [ -s "$out" ] || die "no Debian entry in /etc/apt/sources.list{,.d} to fetch the source package from"
}

# ------------------------------------------------------------------------------------------- source
TREE=$WORK/src/kubernetes
GOPATH_DIR=$WORK/gopath

gopath_go() {  # go in GOPATH mode, from the tree's GOPATH location (the go command goes by $PWD)
    (cd "$GOPATH_DIR/src/k8s.io/kubernetes" &&
        env GO111MODULE=off GOPATH="$GOPATH_DIR" GOFLAGS= GOPROXY=off CGO_ENABLED=0 \
            GOCACHE="$WORK/gocache" "$GO" "$@")
}

fetch_source() {
    write_sources
    say "fetching the kubernetes source package (private apt state in $APT_DIR)"
    apt_private update >"$LOGS/apt-update.log" 2>&1 || { cat "$LOGS/apt-update.log" >&2; die "apt-get update failed"; }
    rm -rf "$WORK/src"
    mkdir -p "$WORK/src"
    (cd "$WORK/src" && apt_private source --download-only kubernetes) >"$LOGS/apt-source.log" 2>&1 ||
        { cat "$LOGS/apt-source.log" >&2; die "apt-get source kubernetes failed"; }
    local dsc
    dsc=$(ls "$WORK"/src/kubernetes_*.dsc)
    [[ $dsc == *really1.20.2* ]] || die "unexpected source version $(basename "$dsc") (want 1.20.5+really1.20.2)"
    say "unpacking $(basename "$dsc") with Debian's patches"
    dpkg-source -x "$dsc" "$TREE" >"$LOGS/dpkg-source.log" 2>&1 ||
        { cat "$LOGS/dpkg-source.log" >&2; die "dpkg-source -x failed"; }
    mkdir -p "$GOPATH_DIR/src/k8s.io"
    ln -sfn "$TREE" "$GOPATH_DIR/src/k8s.io/kubernetes"
}

use_reflect2_102() {
    local deb=/usr/share/gocode/src/github.com/modern-go/reflect2 vendored=$TREE/vendor/github.com/modern-go/reflect2
    [ -f "$deb/go_above_118.go" ] || die "$deb lacks go_above_118.go: Debian's reflect2 is older than 1.0.2"
    # modules.txt names it twice: `# M v1.0.1 => M v1.0.1` and `# M => M v1.0.1`
    grep -q '^# github.com/modern-go/reflect2 v1.0.1 ' "$TREE/vendor/modules.txt" ||
        die "the tree does not vendor reflect2 1.0.1; refusing to replace it"
    rm -f "$vendored"/*.go "$vendored"/*.s
    find -L "$deb" -maxdepth 1 -type f \( -name '*.s' -o -name '*.go' ! -name '*_test.go' \) \
        -exec cp -L {} "$vendored/" \;
    sed -i '/^# github.com\/modern-go\/reflect2 /s/v1\.0\.1/v1.0.2/g' "$TREE/vendor/modules.txt"
    say "vendor/github.com/modern-go/reflect2: 1.0.1 -> $(dpkg-query -W -f='${Version}' golang-github-modern-go-reflect2-dev) (Debian)"
}

generate_openapi() {
    local out=$TREE/pkg/generated/openapi/zz_generated.openapi.go inputs
    [ -f "$out" ] && return 0
    say "generating pkg/generated/openapi with the vendored openapi-gen"
    gopath_go build -o "$WORK/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen
    # upstream's inputs: every package with a +k8s:openapi-gen= tag, staging as vendor/, except
    # code-generator and sample-apiserver (xargs exits 123 when a batch matches nothing: not an error)
    inputs=$(cd "$TREE" && set +o pipefail &&
        find -H . \( -path ./vendor -o -path ./debian -o -path './_*' -o -path './.*' \) -prune -o \
            -type f -name '*.go' -print0 |
        xargs -0 grep -l '+k8s:openapi-gen=' |
        sed 's|^\./||; s|^staging/src/|vendor/|; s|/[^/]*$||' |
        grep -v -e '^vendor/k8s.io/code-generator/' -e '^vendor/k8s.io/sample-apiserver/' |
        LC_ALL=C sort -u | sed 's|^|k8s.io/kubernetes/|' | paste -sd, -)
    [ -n "$inputs" ] || die "found no package tagged +k8s:openapi-gen="
    (cd "$GOPATH_DIR/src/k8s.io/kubernetes" &&
        env GO111MODULE=off GOPATH="$GOPATH_DIR" "$WORK/openapi-gen" --logtostderr -i "$inputs" \
            -p k8s.io/kubernetes/pkg/generated/openapi -O zz_generated.openapi \
            -h vendor/k8s.io/code-generator/hack/boilerplate.go.txt \
            -r "$LOGS/openapi-violations.report") >"$LOGS/openapi-gen.log" 2>&1 ||
        { tail -20 "$LOGS/openapi-gen.log" >&2; die "openapi-gen failed"; }
    cmp -s "$LOGS/openapi-violations.report" "$TREE/api/api-rules/violation_exceptions.list" ||
        die "openapi-gen's API-rule report differs from api/api-rules/violation_exceptions.list (inputs differ)"
}

prepare_tree() {
    if [ -f "$TREE/.calico-py-prepared" ]; then return 0; fi
    rm -rf "$TREE"
    fetch_source
    use_reflect2_102
    generate_openapi
    touch "$TREE/.calico-py-prepared"
}

# -------------------------------------------------------------------------------------------- build
build_servers() {
    local todo=() t
    for t in "${SERVERS[@]}"; do
        if [ $FORCE -eq 0 ] && reports "$t"; then continue; fi
        todo+=("$t")
    done
    [ ${#todo[@]} -eq 0 ] && return 0
    "$HERE/apt-install.sh" golang-1.19-go golang-github-modern-go-reflect2-dev dpkg-dev
    prepare_tree
    # version stamping as hack/lib/version.sh does (GOPATH mode: the packages carry vendor/)
    local flags="-s -w" p stamp
    stamp=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    for p in k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version k8s.io/kubernetes/vendor/k8s.io/component-base/version; do
        flags+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=20 -X $p.gitCommit=$KUBE_COMMIT"
        flags+=" -X $p.gitTreeState=archive -X $p.buildDate=$stamp"
    done
    local pkgs=() start=$SECONDS
    for t in "${todo[@]}"; do pkgs+=("./cmd/$t"); done
    say "building ${todo[*]} (Go 1.19, GOPATH mode, -p $(nproc)); log: $LOGS/go-build.log"
    mkdir -p "$WORK/out"
    gopath_go build -v -p "$(nproc)" -tags selinux,notest -ldflags "$flags" -o "$WORK/out/" "${pkgs[@]}" \
        >"$LOGS/go-build.log" 2>&1 || { grep -v '^k8s.io/' "$LOGS/go-build.log" | tail -30 >&2; die "go build failed"; }
    for t in "${todo[@]}"; do install -m 0755 "$WORK/out/$t" "$BIN/.$t.tmp" && mv "$BIN/.$t.tmp" "$BIN/$t"; done
    rm -rf "$WORK/out"
    say "built ${todo[*]} in $((SECONDS - start)) s"
}

unpack_kubectl() {
    if [ $FORCE -eq 0 ] && reports kubectl; then return 0; fi
    [ -s "$APT_DIR/sources/debian.sources" ] || [ -s "$APT_DIR/sources/debian.list" ] || {
        write_sources
        apt_private update >"$LOGS/apt-update.log" 2>&1 || { cat "$LOGS/apt-update.log" >&2; die "apt-get update failed"; }
    }
    local d
    d=$(mktemp -d "$WORK/kubectl.XXXXXX")
    (cd "$d" && apt_private download kubernetes-client) >"$LOGS/apt-download.log" 2>&1 ||
        { rm -rf "$d"; cat "$LOGS/apt-download.log" >&2; die "apt-get download kubernetes-client failed"; }
    dpkg-deb -x "$d"/kubernetes-client_*.deb "$d/x"
    install -m 0755 "$d/x/usr/bin/kubectl" "$BIN/.kubectl.tmp" && mv "$BIN/.kubectl.tmp" "$BIN/kubectl"
    rm -rf "$d"
    reports kubectl || die "$BIN/kubectl does not report $KUBE_VERSION"
}

all_present() {
    local t
    for t in "${SERVERS[@]}" kubectl; do reports "$t" || return 1; done
}

mkdir -p "$BIN" "$LOGS"
if [ $FORCE -eq 0 ] && all_present; then
    say "up to date: $BIN (Kubernetes $KUBE_VERSION)"
    exit 0
fi
start=$SECONDS
build_servers
unpack_kubectl
for t in "${SERVERS[@]}" kubectl; do reports "$t" || die "$BIN/$t does not report $KUBE_VERSION"; done
say "Kubernetes $KUBE_VERSION in $BIN ($((SECONDS - start)) s)"
