"""The official OpenAI Python client against a running `align serve`.

Run by crates/align-serve/tests/python_client.rs (which starts the server on a loopback port
with two tiny models, "raw" and "aligned", and the API key given here); by hand:

    scripts/serve/.venv/bin/python scripts/serve/openai_client_test.py \
        --base-url http://127.0.0.1:8000/v1 --api-key KEY --model raw --other-model aligned

Each check prints `ok: <name>`; the first failure raises (non-zero exit).
"""

import argparse

import openai


def check(name, cond, detail=""):
    if not cond:
        raise AssertionError(f"{name}: {detail}")
    print(f"ok: {name}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--api-key", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--other-model", required=True)
    a = ap.parse_args()
    client = openai.OpenAI(base_url=a.base_url, api_key=a.api_key, max_retries=0, timeout=60)
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where is Paris?"}]

    # Models.
    ids = [m.id for m in client.models.list().data]
    check("models.list", a.model in ids and a.other_model in ids, ids)
    check("models.retrieve", client.models.retrieve(a.other_model).id == a.other_model)

    # Chat, non-streaming, greedy.
    r = client.chat.completions.create(model=a.model, messages=msgs, max_tokens=16, temperature=0)
    c = r.choices[0]
    check("chat.object", r.object == "chat.completion" and r.model == a.model, r)
    check("chat.message", c.message.role == "assistant" and isinstance(c.message.content, str), c)
    check("chat.finish_reason", c.finish_reason in ("stop", "length"), c.finish_reason)
    u = r.usage
    check("chat.usage", u.prompt_tokens > 0 and 1 <= u.completion_tokens <= 16
          and u.total_tokens == u.prompt_tokens + u.completion_tokens, u)

    # Chat, streaming: the deltas join to the same answer; usage comes last.
    stream = client.chat.completions.create(model=a.model, messages=msgs, max_tokens=16, temperature=0,
                                            stream=True, stream_options={"include_usage": True})
    text, finish, usage, roles = "", None, None, []
    for chunk in stream:
        check_obj = chunk.object == "chat.completion.chunk"
        assert check_obj, chunk
        if chunk.usage is not None:
            usage = chunk.usage
        for ch in chunk.choices:
            if ch.delta.role:
                roles.append(ch.delta.role)
            text += ch.delta.content or ""
            finish = ch.finish_reason or finish
    check("chat.stream.text", text == c.message.content, (text, c.message.content))
    check("chat.stream.role", roles == ["assistant"], roles)
    check("chat.stream.finish", finish == c.finish_reason, finish)
    check("chat.stream.usage", usage is not None and usage.completion_tokens == u.completion_tokens, usage)

    # Logprobs with alternatives.
    r = client.chat.completions.create(model=a.model, messages=msgs, max_tokens=8, temperature=0,
                                       logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    check("chat.logprobs.count", len(content) == r.usage.completion_tokens, len(content))
    for t in content:
        assert len(t.top_logprobs) == 3, t
        assert t.logprob <= 0 and t.token == t.top_logprobs[0].token, t
        assert t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob >= t.top_logprobs[2].logprob, t
    check("chat.logprobs.top", True)
    # Streaming logprobs: one entry per token, the same tokens as above.
    toks = []
    for chunk in client.chat.completions.create(model=a.model, messages=msgs, max_tokens=8, temperature=0,
                                                logprobs=True, top_logprobs=1, stream=True):
        for ch in chunk.choices:
            if ch.logprobs is not None and ch.logprobs.content:
                toks += [t.token for t in ch.logprobs.content]
    check("chat.stream.logprobs", toks == [t.token for t in content], (toks, [t.token for t in content]))

    # Seeds: the same seed samples the same answer; n choices.
    kw = dict(model=a.model, messages=msgs, max_tokens=16, temperature=1.0, seed=1234)
    x = client.chat.completions.create(**kw).choices[0].message.content
    y = client.chat.completions.create(**kw).choices[0].message.content
    check("chat.seed", x == y, (x, y))
    r = client.chat.completions.create(n=2, **kw)
    check("chat.n", [ch.index for ch in r.choices] == [0, 1] and r.choices[0].message.content == x, r.choices)

    # Stop strings: the answer is cut before the stop string.
    full = client.chat.completions.create(model=a.model, messages=msgs, max_tokens=24, temperature=0).choices[0].message.content
    if len(full) >= 6:
        stop = full[3:5]
        cut = client.chat.completions.create(model=a.model, messages=msgs, max_tokens=24, temperature=0, stop=[stop])
        check("chat.stop", cut.choices[0].message.content == full[: full.index(stop)]
              and cut.choices[0].finish_reason == "stop", (cut.choices[0], full, stop))

    # Completions, non-streaming and streaming, with legacy logprobs.
    r = client.completions.create(model=a.other_model, prompt="The cat", max_tokens=8, temperature=0, logprobs=2)
    ch = r.choices[0]
    check("completions.object", r.object == "text_completion" and isinstance(ch.text, str), r)
    check("completions.logprobs", len(ch.logprobs.tokens) == r.usage.completion_tokens
          and all(len(m) >= 1 for m in ch.logprobs.top_logprobs), ch.logprobs)
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model=a.other_model, prompt="The cat", max_tokens=8, temperature=0, stream=True) if c.choices)
    check("completions.stream", streamed == ch.text, (streamed, ch.text))

    # Errors arrive as the client's typed exceptions, with OpenAI's error body.
    try:
        client.chat.completions.create(model="no-such-model", messages=msgs)
        raise AssertionError("no error for an unknown model")
    except openai.NotFoundError as e:
        check("error.model_not_found", e.status_code == 404 and e.code == "model_not_found", e.body)
    try:
        client.chat.completions.create(model=a.model, messages=msgs, temperature=5)
        raise AssertionError("no error for temperature 5")
    except openai.BadRequestError as e:
        check("error.bad_param", e.status_code == 400 and e.param == "temperature"
              and e.type == "invalid_request_error", e.body)
    try:
        client.chat.completions.create(model=a.model, messages=msgs, extra_body={"bogus_field": 1})
        raise AssertionError("no error for an unknown field")
    except openai.BadRequestError as e:
        check("error.unknown_field", "bogus_field" in e.message, e.message)
    try:
        client.chat.completions.create(model=a.model, messages=msgs, max_tokens=10**6)
        raise AssertionError("no error for max_tokens over the context")
    except openai.BadRequestError as e:
        check("error.context_length", e.code == "context_length_exceeded", e.body)
    bad = openai.OpenAI(base_url=a.base_url, api_key="wrong-key", max_retries=0)
    try:
        bad.models.list()
        raise AssertionError("no error for a wrong API key")
    except openai.AuthenticationError as e:
        check("error.api_key", e.status_code == 401, e.body)
    print("all checks passed")


if __name__ == "__main__":
    main()
