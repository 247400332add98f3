"""Call primitives: the primitives whose params hold a jaxpr to look into, shared by the graph
builder (which inlines them) and the flop counter (which counts their bodies)."""

# Call primitive name -> the param that holds its (closed) jaxpr.
CALL_JAXPR_PARAM = {
    "jit": "jaxpr",
    "pjit": "jaxpr",
    "closed_call": "call_jaxpr",
    "core_call": "call_jaxpr",
    "custom_jvp_call": "call_jaxpr",
    "custom_vjp_call": "call_jaxpr",
    "custom_vjp_call_jaxpr": "fun_jaxpr",
    "checkpoint": "jaxpr",
    "remat": "jaxpr",
    "remat2": "jaxpr",
}
