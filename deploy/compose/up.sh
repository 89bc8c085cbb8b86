#!/usr/bin/env bash
# Three departments in Docker with mutual TLS, from the workspace binary (no registry):
# builds the local image, issues a CA and certificates into deploy/compose/pki, and
# starts the cluster on 127.0.0.1:7201-7203. `docker-compose down -v` removes it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); root=$here/../..
cd "$root"
cargo build -q -p concord
CONCORD_IMAGE=$(cargo run -q -p concord-tests --example node_image)
export CONCORD_IMAGE
bin=$root/target/debug/concord; pki=$here/pki
if [ ! -f "$pki/ca.pem" ]; then
  $bin pki init --dir "$pki" >/dev/null
  for d in samr trans just; do
    D=$(echo $d | tr a-z A-Z)
    $bin pki issue --dir "$pki" --department $D --role node --name $d --host $d --host 127.0.0.1 >/dev/null
    $bin pki issue --dir "$pki" --department $D --role client --name app >/dev/null
  done
  $bin pki issue --dir "$pki" --department BIGDATA --role admin --name operator >/dev/null
fi
cd "$here"
docker-compose -p concord up -d
echo "image $CONCORD_IMAGE; try:"
echo "  grpcurl -cacert $pki/ca.pem -cert $pki/BIGDATA-admin-operator.pem -key $pki/BIGDATA-admin-operator.key 127.0.0.1:7201 concord.cluster.v1.ClusterService/Status"
