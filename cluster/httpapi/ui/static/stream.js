// Server-sent events read with fetch, so that the request carries the
// bearer token (EventSource cannot send headers).

// follow calls onEvent(name, data) for each event of url until stop() is
// called, reconnecting after a pause whenever the stream ends. onState
// receives "open", "closed" or an error message; onAuth is called when
// the server refuses the token.
export function follow(url, token, { onEvent, onState, onAuth }) {
  let stopped = false;
  let ctrl = null;
  async function once() {
    ctrl = new AbortController();
    const headers = { Accept: "text/event-stream" };
    if (token) headers.Authorization = "Bearer " + token;
    const resp = await fetch(url, { headers, signal: ctrl.signal, cache: "no-store" });
    if (resp.status === 401 || resp.status === 403) {
      onAuth();
      return false;
    }
    if (!resp.ok || !resp.body) throw new Error("events: HTTP " + resp.status);
    onState("open");
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return true;
      buf += value;
      let end;
      while ((end = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, end);
        buf = buf.slice(end + 2);
        let name = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
        }
        if (data.length) onEvent(name, JSON.parse(data.join("\n")));
      }
    }
  }
  (async () => {
    while (!stopped) {
      try {
        if (!(await once())) return;
        onState("closed");
      } catch (e) {
        if (stopped) return;
        onState(String(e.message || e));
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();
  return () => {
    stopped = true;
    if (ctrl) ctrl.abort();
  };
}
