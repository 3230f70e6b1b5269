# Sourced by the GPU scripts: `serve OUT_DIR TIMEOUT_S [serve flags...]` starts `flux_async serve` with the carried
# tritonserver in the background (log: OUT_DIR/serve.log, pid: $server) and returns once it is up; it fails, with
# the log's tail, when the server exits or is not up in time.
serve() {
    local out=$1 timeout_s=$2
    shift 2
    /tmp/fa/bin/python -m flux_async serve --tritonserver /tmp/srv/tritonserver/bin/tritonserver "$@" \
        > "$out/serve.log" 2>&1 &
    server=$!
    for _ in $(seq 1 "$timeout_s"); do  # until it is up, or gone
        grep -q "Press Ctrl-C" "$out/serve.log" && break
        kill -0 $server 2>/dev/null || break
        sleep 1
    done
    grep -q "Press Ctrl-C" "$out/serve.log" || { echo "server did not start"; tail -n 30 "$out/serve.log"; return 1; }
    echo "server up after ${SECONDS}s"
}
