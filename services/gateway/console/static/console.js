// Parley's agent console: plain JS over /console/api (REST) and /console/ws (live frames).
(() => {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const state = {
    token: sessionStorage.getItem("parley-console-token"),
    me: null, queue: new Map(), current: null, handoff: null, seen: new Set(), delivered: [],
    ws: null, backoff: 500, offset: 0, stopped: false,
  };

  // -- helpers --------------------------------------------------------------------------
  function toast(message, bad) {
    const el = $("toast");
    el.textContent = message;
    el.className = bad ? "toast bad" : "toast";
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { el.textContent = ""; }, 5000);
  }

  async function api(method, path, body) {
    const headers = {"Authorization": "Bearer " + state.token};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch("/console/api" + path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    if (response.status === 401) { logout(); throw new Error("log in again"); }
    if (!response.ok) throw new Error(data.message || response.statusText);
    return data;
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function nameOf(username) {
    const agent = state.me && state.me.agents.find((a) => a.username === username);
    return (agent && agent.name) || username || "an agent";
  }

  function since(ts) {
    if (!ts) return "";
    const s = Math.max(0, Math.round(Date.now() / 1000 + state.offset - ts));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
    return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
  }

  // -- login ----------------------------------------------------------------------------
  $("login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("login-error").textContent = "";
    const response = await fetch("/console/api/login", {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({username: $("username").value, password: $("password").value}),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) { $("login-error").textContent = data.message || "login failed"; return; }
    state.token = data.token;
    sessionStorage.setItem("parley-console-token", data.token);
    $("password").value = "";
    start();
  });

  function logout() {
    state.stopped = true;
    state.token = null;
    sessionStorage.removeItem("parley-console-token");
    if (state.ws) state.ws.close();
    $("console-view").hidden = true; $("whoami").hidden = true; $("login-view").hidden = false;
    $("username").focus();
  }
  $("logout").addEventListener("click", logout);

  async function start() {
    try { state.me = await api("GET", "/me"); } catch (err) { return; }
    state.stopped = false;
    $("login-view").hidden = true; $("console-view").hidden = false; $("whoami").hidden = false;
    $("agent-name").textContent = (state.me.name || state.me.username) + " (" + state.me.role + ")";
    const assignee = $("assignee"); assignee.replaceChildren();
    for (const a of state.me.agents) assignee.appendChild(new Option(a.name || a.username, a.username));
    const followup = $("followup");
    followup.replaceChildren(new Option("nothing (waits for the user)", ""));
    for (const name of state.me.followup_actions) followup.appendChild(new Option(name, name));
    const canned = $("canned");
    canned.replaceChildren(new Option("— insert a canned response —", ""));
    for (const r of await api("GET", "/responses")) {
      for (const text of r.texts) canned.appendChild(new Option(r.name + ": " + text, text));
    }
    connect();
  }

  // -- live -----------------------------------------------------------------------------
  function connect() {
    if (state.stopped || !state.token) return;
    const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/console/ws");
    state.ws = ws;
    ws.onopen = () => {
      ws.send(JSON.stringify({type: "auth", token: state.token}));
      if (state.current) ws.send(JSON.stringify({type: "watch", conversation_id: state.current}));
    };
    ws.onmessage = (e) => onFrame(JSON.parse(e.data));
    ws.onclose = (e) => {
      $("connection").textContent = "offline"; $("connection").className = "pill";
      if (e.code === 1008) { logout(); return; }
      setTimeout(connect, state.backoff); state.backoff = Math.min(state.backoff * 2, 8000);
    };
  }

  function onFrame(frame) {
    switch (frame.type) {
      case "queue":
        state.offset = frame.now - Date.now() / 1000; state.backoff = 500;
        $("connection").textContent = "live"; $("connection").className = "pill on";
        state.queue = new Map(frame.items.map((i) => [i.conversation_id, i]));
        renderQueue(); break;
      case "queue_item":
        if (!state.queue.has(frame.item.conversation_id)) {
          toast("New conversation waiting: " + frame.item.conversation_id + " (" + frame.item.reason + ")");
        }
        state.queue.set(frame.item.conversation_id, frame.item);
        if (frame.item.conversation_id === state.current) setHandoff(frame.item);
        renderQueue(); break;
      case "queue_removed":
        state.queue.delete(frame.conversation_id);
        if (frame.conversation_id === state.current) setHandoff(null);
        renderQueue(); break;
      case "transcript":
        if (frame.conversation_id !== state.current) break;
        $("transcript").replaceChildren(); state.seen.clear();
        for (const entry of frame.transcript) addEntry(entry);
        setHandoff(frame.handoff); break;
      case "event":
        if (frame.conversation_id === state.current) addEntry(frame.entry);
        break;
      case "delivered":
        if (frame.conversation_id === state.current && frame.source === "agent") markDelivered(frame.texts);
        break;
      case "error":
        toast(frame.message, true); break;
    }
  }

  // -- queue ----------------------------------------------------------------------------
  function renderQueue() {
    const list = $("queue");
    const items = [...state.queue.values()].sort((a, b) =>
      (a.claimed_by !== null) - (b.claimed_by !== null) || a.paused_at - b.paused_at);
    list.replaceChildren();
    for (const item of items) {
      const li = el("li", item.claimed_by ? "claimed" : "");
      const button = el("button");
      button.type = "button";
      button.dataset.cid = item.conversation_id;
      if (item.conversation_id === state.current) button.setAttribute("aria-current", "true");
      button.appendChild(el("span", "reason", item.reason));
      button.appendChild(el("strong", "", item.conversation_id));
      const meta = el("span", "meta");
      meta.dataset.since = item.paused_at;
      meta.dataset.holder = item.claimed_by ? "claimed by " + nameOf(item.claimed_by) : "unclaimed";
      button.appendChild(meta);
      const last = item.last_messages[item.last_messages.length - 1];
      if (last) button.appendChild(el("span", "last", (last.kind === "user" ? "User: " : last.kind === "agent" ? "Agent: " : "Bot: ") + (last.text || "")));
      button.addEventListener("click", () => open(item.conversation_id));
      li.appendChild(button);
      list.appendChild(li);
    }
    $("queue-count").textContent = String(items.length);
    const waiting = items.filter((i) => !i.claimed_by).length;
    document.title = (waiting ? "(" + waiting + ") " : "") + "Parley — agent console";
    $("queue-empty").hidden = items.length > 0;
    tick();
  }

  function tick() {
    for (const meta of document.querySelectorAll("#queue .meta")) {
      meta.textContent = "waiting " + since(Number(meta.dataset.since)) + " · " + meta.dataset.holder;
    }
  }
  setInterval(tick, 1000);

  // -- conversation ---------------------------------------------------------------------
  function open(cid) {
    state.current = cid; state.handoff = state.queue.get(cid) || null;
    $("conv-title").textContent = "Conversation " + cid;
    $("transcript").replaceChildren(el("li", "system", "loading…"));
    state.seen.clear(); state.delivered = [];
    for (const b of document.querySelectorAll("#queue button, #search-results button")) {
      if (b.dataset.cid === cid) b.setAttribute("aria-current", "true");
      else b.removeAttribute("aria-current");
    }
    setHandoff(state.handoff);
    if (state.ws && state.ws.readyState === WebSocket.OPEN) {
      state.ws.send(JSON.stringify({type: "watch", conversation_id: cid}));
    }
    $("transcript").focus();
  }

  function setHandoff(handoff) {
    state.handoff = handoff;
    const me = state.me && state.me.username;
    const mine = handoff && handoff.claimed_by === me;
    const admin = state.me && state.me.role === "admin";
    const held = handoff && handoff.claimed_by && !mine;
    let status;
    if (!state.current) status = "Pick a conversation in the queue or in the search results.";
    else if (!handoff) status = "The bot is handling this conversation.";
    else status = "Handed over (" + handoff.reason + ") — " + (handoff.claimed_by ? (mine ? "you hold it" : "held by " + nameOf(handoff.claimed_by)) : "waiting for an agent");
    $("conv-status").textContent = status;
    $("conv-actions").hidden = !handoff;
    $("claim").disabled = !handoff || !!handoff.claimed_by;
    $("assign").disabled = !!held && !admin;
    $("hand-back").disabled = !!held && !admin;
    $("resolve").disabled = !!held && !admin;
    $("reply-form").hidden = !state.current;
    $("send").disabled = !(mine || (admin && handoff));
  }

  function addEntry(entry) {
    const key = [entry.kind, entry.timestamp, entry.text, entry.command].join("|");
    if (state.seen.has(key)) return;
    state.seen.add(key);
    const list = $("transcript");
    if (list.firstChild && list.firstChild.textContent === "loading…") list.replaceChildren();
    const li = el("li", entry.kind);
    if (entry.kind === "handoff") { li.className = "system"; li.textContent = "— handed to an agent: " + entry.reason + " —"; }
    else if (entry.kind === "resume") { li.className = "system"; li.textContent = "— the bot took over again —"; }
    else if (entry.kind === "feedback") {
      li.className = "system feedback";
      const good = entry.scale === "stars" ? entry.rating >= 4 : entry.rating > 0;
      const rating = entry.scale === "stars" ? entry.rating + "/5 stars" : (good ? "\u{1F44D} helpful" : "\u{1F44E} not helpful");
      let line = "— user feedback: " + rating;
      if (entry.message_text) line += " on \u201C" + entry.message_text + "\u201D";
      if (entry.text) line += ": " + entry.text;
      li.textContent = line + " —";
    }
    else if (entry.kind === "action") {
      li.className = "system";
      const verbs = {claim: "claimed the conversation", assign: "assigned it to " + nameOf(entry.assignee),
                     hand_back: "handed it back to the bot", resolve: "resolved it"};
      li.textContent = "— " + nameOf(entry.agent_id) + " " + (verbs[entry.command] || entry.command) + " —";
    } else {
      const who = {user: "User", bot: "Bot", agent: "Agent " + nameOf(entry.agent_id),
                   note: "Internal note by " + nameOf(entry.agent_id)}[entry.kind];
      li.appendChild(el("span", "who", who));
      const bubble = el("span", "bubble", entry.text || "");
      li.appendChild(bubble);
      if (entry.kind === "user" && entry.intent) {
        const conf = entry.confidence === null || entry.confidence === undefined ? "" : " " + (entry.confidence * 100).toFixed(0) + "%";
        li.appendChild(el("span", "nlu", "intent " + entry.intent + conf));
      }
      if (entry.kind === "bot" && entry.buttons) {
        li.appendChild(el("span", "nlu", "buttons: " + entry.buttons.map((b) => b.title || b.payload).join(", ")));
      }
    }
    list.appendChild(li);
    const early = entry.kind === "agent" ? state.delivered.indexOf(entry.text) : -1;
    if (early >= 0) { state.delivered.splice(early, 1); setDelivered(li); }
    list.scrollTop = list.scrollHeight;
  }

  // The outbound message and the `agent` event travel apart: whichever comes second marks it.
  function markDelivered(texts) {
    const pending = [...document.querySelectorAll("#transcript li.agent:not([data-delivered])")];
    for (const text of texts) {
      const li = pending.find((item) => !item.dataset.delivered && item.querySelector(".bubble").textContent === text);
      if (li) setDelivered(li); else state.delivered.push(text);
    }
  }

  function setDelivered(li) {
    li.dataset.delivered = "1";
    li.appendChild(el("span", "delivered", "✓ delivered"));
  }

  // -- commands -------------------------------------------------------------------------
  async function command(path, body, done) {
    if (!state.current) return;
    try {
      await api("POST", "/conversations/" + encodeURIComponent(state.current) + path, body);
      if (done) toast(done);
    } catch (err) { toast(err.message, true); }
  }
  $("claim").addEventListener("click", () => command("/claim", undefined, "Claimed"));
  $("assign").addEventListener("click", () => command("/assign", {assignee: $("assignee").value}, "Assigned"));
  $("hand-back").addEventListener("click", () =>
    command("/hand_back", {followup_action: $("followup").value || null}, "Handed back to the bot"));
  $("resolve").addEventListener("click", () => command("/resolve", undefined, "Resolved"));

  async function sendText(kind) {
    const box = $("reply-text");
    const text = box.value.trim();
    if (!text) { box.focus(); return; }
    box.value = "";
    await command(kind === "note" ? "/notes" : "/reply", {text});
    box.focus();
  }
  $("reply-form").addEventListener("submit", (e) => { e.preventDefault(); if (!$("send").disabled) sendText("reply"); });
  $("add-note").addEventListener("click", () => sendText("note"));
  $("reply-text").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("reply-form").requestSubmit(); }
  });
  $("canned").addEventListener("change", (e) => {
    if (!e.target.value) return;
    $("reply-text").value = e.target.value; e.target.value = ""; $("reply-text").focus();
  });

  // -- search ---------------------------------------------------------------------------
  $("search-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const list = $("search-results");
    try {
      const hits = await api("GET", "/search?q=" + encodeURIComponent($("search-text").value));
      list.replaceChildren();
      if (!hits.length) list.appendChild(el("li", "muted", "No messages found."));
      for (const hit of hits) {
        const li = el("li"); const button = el("button"); button.type = "button";
        button.dataset.cid = hit.conversation_id;
        button.appendChild(el("strong", "", hit.conversation_id));
        button.appendChild(el("span", "", (hit.kind === "user" ? "User: " : "Bot: ") + hit.text));
        button.appendChild(el("span", "meta", hit.timestamp ? new Date(hit.timestamp * 1000).toLocaleString() : ""));
        button.addEventListener("click", () => open(hit.conversation_id));
        li.appendChild(button); list.appendChild(li);
      }
    } catch (err) { toast(err.message, true); }
  });

  if (state.token) start(); else $("username").focus();
})();
