-- wrk: POST the no-op inference request (KServe v2 JSON).
wrk.method = "POST"
wrk.body = '{"inputs":[{"name":"prompt","shape":[1],"datatype":"BYTES","data":["a cat"]}],"outputs":[{"name":"seeds"}]}'
wrk.headers["Content-Type"] = "application/json"
