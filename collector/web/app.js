/* edgetrace fleet view: a single-page app over the collector's JSON API (see README "HTTP API").
 * Hash routes:  #/  fleet overview   #/devices/ID   #/targets/ID?range=24h   #/findings/ID   #/findings
 * No framework: each view fetches what it needs once and renders an HTML string; everything the
 * devices sent (names, functions, files) is escaped, since it comes from outside. */
(function () {
  "use strict";

  var app = document.getElementById("app");
  var statusEl = document.getElementById("status");
  var TOKEN_KEY = "edgetrace.token";
  var SEVERITY = { confirmed: 3, likely: 2, suspected: 1 };
  var RANGES = [["1h", 3600e3], ["6h", 6 * 3600e3], ["24h", 24 * 3600e3], ["7d", 7 * 86400e3], ["30d", 30 * 86400e3]];
  var STATE_COLORS = ["#4263eb", "#f08c00", "#2f9e44", "#ae3ec9", "#e03131", "#1098ad", "#74b816", "#f76707",
                      "#5c7cfa", "#868e96"];
  var plots = [];        // live uPlot instances of the current view, destroyed on navigation
  var refreshTimer = null;
  var renderSeq = 0;     // a view started later wins over a slower earlier one

  // ---- helpers ---------------------------------------------------------------------------
  function esc(v) {
    return String(v === null || v === undefined ? "" : v).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function enc(v) { return encodeURIComponent(String(v)); }
  function num(v) { return v === null || v === undefined ? "–" : Number(v).toLocaleString("en-US"); }
  function bytes(v) {
    if (v === null || v === undefined) return "–";
    var u = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0, x = Number(v);
    while (Math.abs(x) >= 1024 && i < u.length - 1) { x /= 1024; i++; }
    return (i === 0 ? x.toFixed(0) : x.toFixed(x < 10 ? 2 : 1)) + " " + u[i];
  }
  function isoTime(ms) { return ms ? new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC") : "–"; }
  function ago(ms) {
    if (!ms) return "never";
    var s = Math.round((Date.now() - ms) / 1000);
    if (s < 0) s = 0;
    if (s < 90) return s + " s ago";
    if (s < 5400) return Math.round(s / 60) + " min ago";
    if (s < 129600) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " d ago";
  }
  function when(ms) { return '<span title="' + esc(isoTime(ms)) + '">' + esc(ago(ms)) + "</span>"; }
  function duration(s) {
    if (s === null || s === undefined) return "–";
    if (s < 120) return Math.round(s) + " s";
    if (s < 7200) return Math.round(s / 60) + " min";
    if (s < 172800) return (s / 3600).toFixed(1) + " h";
    return (s / 86400).toFixed(1) + " d";
  }
  function badge(conf) {
    return conf ? '<span class="badge sev-' + esc(conf) + '">' + esc(conf) + "</span>" : '<span class="badge sev-ok">ok</span>';
  }
  function statusBadge(st) { return '<span class="badge st-' + esc(st) + '">' + esc(st || "unknown") + "</span>"; }
  function worstOf(a, b) { return (SEVERITY[a] || 0) >= (SEVERITY[b] || 0) ? a : b; }
  function site(f) {
    var loc = f.file ? f.file + (f.line ? ":" + f.line : "") : "";
    return '<code class="fn">' + esc(f.function || "?") + "</code>" + (loc ? ' <span class="loc">' + esc(loc) + "</span>" : "");
  }
  function counts(o) {
    o = o || {};
    var parts = [];
    ["confirmed", "likely", "suspected"].forEach(function (c) {
      if (o[c]) parts.push('<span class="badge sev-' + c + '">' + o[c] + " " + c + "</span>");
    });
    return parts.join(" ") || '<span class="muted">none</span>';
  }
  function setStatus(text, cls) { statusEl.textContent = text || ""; statusEl.className = "status " + (cls || ""); }

  // ---- API access, with the bearer token when the collector asks for one -----------------
  function NeedToken(rejected) { this.rejected = rejected; }
  function HttpError(status, message) { this.status = status; this.message = message; }

  function authHeaders() {
    var t = sessionStorage.getItem(TOKEN_KEY);
    return t ? { Authorization: "Bearer " + t } : {};
  }
  // Absolute from location.origin: a page opened as http://user:token@host/ (HTTP Basic) has a
  // document URL with credentials, against which fetch() refuses to resolve a relative path.
  function url(path) { return location.origin + path; }
  function api(path) {
    return fetch(url(path), { headers: authHeaders(), cache: "no-store" }).then(function (r) {
      if (r.status === 401) throw new NeedToken(!!sessionStorage.getItem(TOKEN_KEY));
      if (!r.ok) {
        return r.json().catch(function () { return {}; }).then(function (b) {
          throw new HttpError(r.status, b.error || r.statusText);
        });
      }
      return r.json();
    });
  }

  function showTokenForm(rejected) {
    app.innerHTML =
      '<section class="card narrow"><h1>Access token</h1>' +
      "<p>This collector's API requires a bearer token (the file named by <code>http_token_file</code> in its config).</p>" +
      (rejected ? '<p class="error">The token was rejected.</p>' : "") +
      '<form id="token-form"><input id="token" type="password" autocomplete="off" placeholder="token" required autofocus>' +
      ' <button type="submit">Open</button></form>' +
      '<p class="muted small">Kept in this tab only (sessionStorage).</p></section>';
    document.getElementById("token-form").addEventListener("submit", function (e) {
      e.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value.trim());
      route();
    });
  }
  function showError(e) {
    if (e instanceof NeedToken) return showTokenForm(e.rejected);
    var msg = e instanceof HttpError ? e.status + ": " + e.message : (e && e.message) || String(e);
    app.innerHTML = '<section class="card"><h1>Could not load this page</h1><p class="error">' + esc(msg) +
      '</p><p><a href="#/">Back to the fleet</a></p></section>';
    setStatus("error", "bad");
  }

  // Downloads: a plain link when no token is needed; with a token the browser cannot add the
  // header to a navigation, so the file is fetched and handed over as a blob.
  document.addEventListener("click", function (e) {
    var a = e.target.closest && e.target.closest("a[data-download]");
    if (!a || !sessionStorage.getItem(TOKEN_KEY)) return;
    e.preventDefault();
    fetch(url(a.getAttribute("href")), { headers: authHeaders() }).then(function (r) {
      if (!r.ok) throw new HttpError(r.status, r.statusText);
      return r.blob();
    }).then(function (b) {
      var tmp = document.createElement("a");
      tmp.href = URL.createObjectURL(b);
      tmp.download = a.getAttribute("data-download");
      document.body.appendChild(tmp);
      tmp.click();
      setTimeout(function () { URL.revokeObjectURL(tmp.href); tmp.remove(); }, 1000);
    }).catch(function (err) { setStatus("download failed: " + (err.message || err), "bad"); });
  });

  // ---- plots (uPlot) ---------------------------------------------------------------------
  function markerPlugin(markers) {
    return {
      hooks: {
        draw: function (u) {
          var ctx = u.ctx, top = u.bbox.top, h = u.bbox.height;
          ctx.save();
          markers.forEach(function (m) {
            var x = u.valToPos(m.t / 1000, "x", true);
            if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) return;
            ctx.strokeStyle = m.event === "cleared" ? "#2f9e44" : ({ confirmed: "#d6336c", likely: "#f08c00" }[m.confidence] || "#e6a700");
            ctx.lineWidth = 2 * devicePixelRatio;
            ctx.setLineDash(m.event === "cleared" ? [4 * devicePixelRatio, 4 * devicePixelRatio] : []);
            ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + h); ctx.stroke();
            ctx.fillStyle = ctx.strokeStyle;
            ctx.beginPath(); ctx.moveTo(x - 6, top); ctx.lineTo(x + 6, top); ctx.lineTo(x, top + 10); ctx.fill();
          });
          ctx.restore();
        }
      }
    };
  }

  // el: container; t: ms timestamps; series: [{label, values, color, fmt}]
  function plot(el, title, t, series, opts) {
    opts = opts || {};
    var xs = t.map(function (v) { return v / 1000; });
    var drawn = 0;
    series.forEach(function (s) { s.values.forEach(function (v) { if (v !== null && v !== undefined) drawn++; }); });
    el.setAttribute("data-points", String(drawn));
    el.setAttribute("data-markers", String((opts.markers || []).length));
    if (!xs.length) {
      el.innerHTML = '<div class="plot-empty">' + esc(title) + ": no data in this range</div>";
      return null;
    }
    var fmt = opts.bytes ? bytes : function (v) { return v === null || v === undefined ? "–" : num(Math.round(v)); };
    var u = new uPlot({
      title: title,
      width: Math.max(300, el.clientWidth - 4),
      height: opts.height || 220,
      plugins: opts.markers && opts.markers.length ? [markerPlugin(opts.markers)] : [],
      cursor: { drag: { x: true, y: false } },
      scales: { x: { time: true } },
      axes: [
        { stroke: "#495057", grid: { stroke: "#eef0f2" } },
        { stroke: "#495057", grid: { stroke: "#eef0f2" }, size: 70,
          values: function (u2, vals) { return vals.map(function (v) { return opts.bytes ? bytes(v) : num(v); }); } }
      ],
      series: [{}].concat(series.map(function (s) {
        return { label: s.label, stroke: s.color, width: 1.5, fill: s.fill || undefined, spanGaps: false,
                 points: { show: xs.length < 60 }, value: function (u2, v) { return fmt(v); } };
      }))
    }, [xs].concat(series.map(function (s) { return s.values; })), el);
    plots.push({ u: u, el: el });
    return u;
  }
  window.addEventListener("resize", function () {
    plots.forEach(function (p) { p.u.setSize({ width: Math.max(300, p.el.clientWidth - 4), height: p.u.height }); });
  });
  function clearView() {
    plots.forEach(function (p) { p.u.destroy(); });
    plots = [];
    if (refreshTimer) { clearInterval(refreshTimer); refreshTimer = null; }
  }

  // ---- fleet overview --------------------------------------------------------------------
  // One request for the devices and one for the open findings, whatever the fleet's size: the
  // grid is built in the browser, never with a request per device.
  function viewFleet(seq, params) {
    return Promise.all([api("/api/devices"), api("/api/findings?state=open&limit=1000")]).then(function (r) {
      if (seq !== renderSeq) return;
      renderFleet(r[0].devices || [], Array.isArray(r[1]) ? r[1] : (r[1].findings || []), params);
    });
  }

  function renderFleet(devices, findings, params) {
    var services = {}, cells = {};
    function cell(dev, svc) {
      var k = dev + "\u0000" + svc;
      return cells[k] || (cells[k] = { worst: null, n: 0, target: null, finding: null });
    }
    devices.forEach(function (d) {
      (d.services || []).forEach(function (s) {   // optional: the device's targets by service
        services[s.service] = true;
        var c = cell(d.id, s.service);
        c.target = s.target;
        c.worst = worstOf(c.worst, s.worst);
      });
    });
    findings.forEach(function (f) {
      var svc = f.service || "(unnamed)";
      services[svc] = true;
      var c = cell(f.device, svc);
      c.n++;
      if (!c.finding || (SEVERITY[f.confidence] || 0) > (SEVERITY[c.worst] || 0)) c.finding = f.id;
      c.worst = worstOf(c.worst, f.confidence);
      if (!c.target) c.target = f.target;
    });
    var svcList = Object.keys(services).sort();
    var silent = devices.filter(function (d) { return d.status === "silent"; }).length;
    var open = { confirmed: 0, likely: 0, suspected: 0 };
    findings.forEach(function (f) { if (open[f.confidence] !== undefined) open[f.confidence]++; });
    // worst first, then silent ones, then by name: what needs a person comes to the top
    devices = devices.slice().sort(function (a, b) {
      return (SEVERITY[b.worst] || 0) - (SEVERITY[a.worst] || 0) ||
        (b.status === "silent") - (a.status === "silent") || String(a.id).localeCompare(String(b.id));
    });

    var h = [];
    h.push('<div class="summary">' +
      tile("Devices", num(devices.length), "") +
      tile("Online", num(devices.length - silent - devices.filter(function (d) { return d.status === "revoked"; }).length), "ok") +
      tile("Silent", num(silent), silent ? "warn" : "") +
      tile("Confirmed leaks", num(open.confirmed), open.confirmed ? "sev-confirmed" : "") +
      tile("Likely", num(open.likely), open.likely ? "sev-likely" : "") +
      tile("Suspected", num(open.suspected), open.suspected ? "sev-suspected" : "") + "</div>");
    h.push('<section class="card"><div class="card-head"><h1>Fleet</h1>' +
      '<input id="filter" type="search" placeholder="Filter devices or services…" value="' + esc(params.q || "") + '">' +
      '<label class="chk"><input type="checkbox" id="only-bad"' + (params.bad ? " checked" : "") + "> only devices needing attention</label>" +
      '<span class="legend">' + badge("confirmed") + badge("likely") + badge("suspected") + badge(null) +
      '<span class="badge st-silent">silent</span></span></div>');
    if (!devices.length) {
      h.push('<p class="muted">No device has sent a snapshot yet. Provision one with <code>edgetrace-collector provision</code>.</p></section>');
      app.innerHTML = h.join("");
      return;
    }
    h.push('<div class="grid-wrap"><table class="grid" id="fleet-grid"><thead><tr><th class="dev">Device</th><th>Status</th><th>Last seen</th>');
    svcList.forEach(function (s) { h.push('<th class="svc"><span>' + esc(s) + "</span></th>"); });
    h.push('<th>Open findings</th><th class="num">Targets</th></tr></thead><tbody>');
    devices.forEach(function (d) {
      var bad = d.worst || d.status !== "online" || (d.settings_refused !== null && d.settings_refused !== undefined);
      h.push('<tr data-key="' + esc(String(d.id).toLowerCase() + " " + svcList.filter(function (s) {
        return cells[d.id + "\u0000" + s]; }).join(" ").toLowerCase()) + '" data-bad="' + (bad ? 1 : 0) + '"' +
        (d.status === "silent" ? ' class="silent"' : "") + ">");
      h.push('<th class="dev"><a href="#/devices/' + enc(d.id) + '">' + esc(d.id) + "</a>" +
        (d.board ? ' <span class="muted small">' + esc(d.board) + "</span>" : "") + "</th>");
      // a refused central settings set: the device runs older settings than the operator set
      h.push("<td>" + statusBadge(d.status) + (d.settings_refused !== null && d.settings_refused !== undefined ?
        ' <a class="badge settings-refused" href="#/devices/' + enc(d.id) + '" title="' +
        esc("settings refused: " + d.settings_refused) + '">settings refused</a>' : "") +
        "</td><td>" + when(d.last_seen_ms) + "</td>");
      svcList.forEach(function (s) {
        var c = cells[d.id + "\u0000" + s];
        if (!c) { h.push('<td class="cell none"></td>'); return; }
        var href = c.finding ? "#/findings/" + c.finding : c.target ? "#/targets/" + c.target : "#/devices/" + enc(d.id);
        var label = c.worst ? (c.n > 1 ? c.n + " open" : c.worst) : "ok";
        h.push('<td class="cell sev-' + esc(c.worst || "ok") + '" data-service="' + esc(s) + '" data-worst="' + esc(c.worst || "ok") +
          '"><a href="' + href + '" title="' + esc(d.id + " / " + s + ": " + (c.worst || "no open finding")) + '">' + esc(label) + "</a></td>");
      });
      // from the device's own counts, so a device stays marked even past the findings list's limit
      h.push('<td class="open">' + (d.worst ? counts(d.open_findings) : d.status === "online" ? badge(null) : '<span class="muted">–</span>') + '</td><td class="num">' + num(d.targets) + "</td></tr>");
    });
    h.push("</tbody></table></div></section>");
    // the worst open findings under the grid: where in the code, how fast, since when
    var top = findings.slice().sort(function (a, b) {
      return (SEVERITY[b.confidence] || 0) - (SEVERITY[a.confidence] || 0) || (b.growth_per_min || 0) - (a.growth_per_min || 0);
    }).slice(0, 25);
    h.push('<section class="card"><div class="card-head"><h2>Open findings</h2>' +
      (findings.length > top.length ? '<a href="#/findings">all ' + num(findings.length) + " →</a>" : "") + "</div>" +
      findingsTable(top, false) + "</section>");
    app.innerHTML = h.join("");

    var filter = document.getElementById("filter"), onlyBad = document.getElementById("only-bad");
    var rows = Array.prototype.slice.call(document.querySelectorAll("#fleet-grid tbody tr"));
    function apply() {
      var q = filter.value.trim().toLowerCase(), b = onlyBad.checked;
      rows.forEach(function (tr) {
        var show = (!q || tr.getAttribute("data-key").indexOf(q) >= 0) && (!b || tr.getAttribute("data-bad") === "1");
        tr.style.display = show ? "" : "none";
      });
    }
    var deb = null;
    filter.addEventListener("input", function () { clearTimeout(deb); deb = setTimeout(apply, 80); });
    onlyBad.addEventListener("change", apply);
    apply();
  }
  function tile(label, value, cls) {
    return '<div class="tile ' + cls + '"><div class="tile-v">' + value + '</div><div class="tile-l">' + esc(label) + "</div></div>";
  }

  // ---- device ----------------------------------------------------------------------------
  function viewDevice(seq, id) {
    return Promise.all([api("/api/devices/" + enc(id)), api("/api/findings?device=" + enc(id)),
                        api("/api/devices/" + enc(id) + "/settings")]).then(function (r) {
      if (seq !== renderSeq) return;
      var d = r[0], findings = Array.isArray(r[1]) ? r[1] : (r[1].findings || []);
      var h = [];
      h.push('<div class="crumbs"><a href="#/">Fleet</a> › ' + esc(d.id) + "</div>");
      h.push('<section class="card"><div class="card-head"><h1>' + esc(d.id) + "</h1>" + statusBadge(d.status) + "</div>");
      h.push('<dl class="facts">' +
        fact("Board", esc(d.board || "–")) + fact("Agent version", esc(d.agent_version || "–")) +
        fact("Last seen", when(d.last_seen_ms)) + fact("First seen", when(d.first_seen_ms)) +
        fact("Snapshot interval", d.interval_s ? esc(d.interval_s) + " s" : "–") +
        fact("Spool pending", d.spool_pending === null || d.spool_pending === undefined ? "–" : num(d.spool_pending)) +
        fact("Spool dropped", '<span class="' + (d.spool_dropped ? "bad-text" : "") + '">' + num(d.spool_dropped) + "</span>") +
        fact("Open findings", counts(d.open_findings)) + "</dl></section>");
      var targets = d.targets || [];
      h.push('<section class="card"><h2>Targets</h2>');
      if (!targets.length) h.push('<p class="muted">No targets.</p>');
      else {
        h.push('<table class="list"><thead><tr><th>Service</th><th>Pod / container</th><th>Port</th><th>Go</th><th>PID</th>' +
          '<th class="num">Goroutines</th><th class="num">Heap in use</th><th class="num">RSS</th><th class="num">Threads</th>' +
          "<th>Open findings</th><th>Last seen</th></tr></thead><tbody>");
        targets.forEach(function (t) {
          var l = t.last || {};
          var pod = [t.namespace, t.pod, t.container].filter(Boolean).join(" / ");
          h.push('<tr><td><a href="#/targets/' + enc(t.id) + '">' + esc(t.service || "(unnamed)") + "</a></td><td>" +
            esc(pod || "–") + "</td><td>" + esc(t.port || "–") + "</td><td>" + esc(t.go_version || "–") + "</td><td>" +
            esc(t.pid || "–") + '</td><td class="num">' + num(l.goroutines) + '</td><td class="num">' + bytes(l.heap_inuse) +
            '</td><td class="num">' + bytes(l.rss_bytes) + '</td><td class="num">' + num(l.threads) + "</td><td>" +
            (t.worst ? counts(t.open_findings) : badge(null)) + "</td><td>" + when(t.last_seen_ms) + "</td></tr>");
        });
        h.push("</tbody></table>");
      }
      h.push("</section>");
      h.push(settingsCard(r[2]));
      h.push('<section class="card"><h2>Findings</h2>' + findingsTable(findings, true) + "</section>");
      app.innerHTML = h.join("");
    });
  }
  function fact(k, v) { return "<div><dt>" + esc(k) + "</dt><dd>" + v + "</dd></div>"; }

  // Central settings (PUT /api/settings, /api/devices/ID/settings): what the device is sent,
  // what it reports running, and why it refused a set (its config parser's reason).
  function settingsCard(st) {
    var h = ['<section class="card" id="settings"><h2>Central settings</h2>'];
    var ap = st.applied, rej = st.rejected;
    h.push('<dl class="facts">' +
      fact("Fleet version", esc(st.fleet_version)) + fact("Device version", esc(st.version)) +
      fact("Applied", ap ? "fleet v" + esc(ap.fleet) + " / device v" + esc(ap.device) +
        (st.in_sync ? "" : ' <span class="bad-text">(not yet the latest)</span>') : "not reported") +
      fact("Reported", when(st.reported_ms)) + "</dl>");
    if (rej) h.push('<p class="bad-text settings-rejected">Refused fleet v' + esc(rej.fleet) + " / device v" +
      esc(rej.device) + ": " + esc(rej.reason) + " (the device keeps its previous settings)</p>");
    var keys = Object.keys(st.effective || {}).sort();
    if (!keys.length) h.push('<p class="muted">None: the device runs its agent.conf.</p>');
    else {
      h.push('<table class="list"><thead><tr><th>Setting</th><th>Value</th><th>From</th></tr></thead><tbody>');
      keys.forEach(function (k) {
        var v = st.effective[k];
        h.push("<tr><td><code>" + esc(k) + "</code></td><td>" + esc(Array.isArray(v) ? v.join(", ") : v) + "</td><td>" +
          ((st.settings || {})[k] !== undefined ? "device" : "fleet") + "</td></tr>");
      });
      h.push("</tbody></table>");
    }
    return h.join("") + "</section>";
  }

  function findingsTable(findings, withState) {
    if (!findings.length) return '<p class="muted">No findings.</p>';
    var h = ['<table class="list"><thead><tr><th>Confidence</th>' + (withState ? "<th>State</th>" : "") +
      "<th>Device</th><th>Service</th><th>Kind</th><th>Site</th><th>Waiting in</th>" +
      '<th class="num">Count</th><th class="num">Growth/min</th><th>First seen</th><th>Last seen</th></tr></thead><tbody>'];
    findings.forEach(function (f) {
      h.push('<tr class="' + (f.state === "cleared" ? "cleared" : "") + '" data-finding="' + esc(f.id) + '"><td>' + badge(f.confidence) + "</td>" +
        (withState ? "<td>" + esc(f.state) + "</td>" : "") +
        '<td><a href="#/devices/' + enc(f.device) + '">' + esc(f.device) + '</a></td><td><a href="#/targets/' + enc(f.target) + '">' +
        esc(f.service || "(unnamed)") + '</a></td><td>' + esc(f.kind) + '</td><td class="wrap"><a href="#/findings/' + enc(f.id) + '">' + site(f) +
        "</a></td><td>" + esc(f.goroutine_state || "–") + '</td><td class="num">' + num(f.count) + '</td><td class="num">' +
        (f.growth_per_min === null || f.growth_per_min === undefined ? "–" : Number(f.growth_per_min).toFixed(1)) + "</td><td>" +
        when(f.first_seen_ms) + "</td><td>" + when(f.last_seen_ms) + "</td></tr>");
    });
    h.push("</tbody></table>");
    return h.join("");
  }

  // ---- findings list ---------------------------------------------------------------------
  function viewFindings(seq, params) {
    var state = params.state || "open", q = "state=" + enc(state);
    if (params.confidence) q += "&confidence=" + enc(params.confidence);
    return api("/api/findings?" + q).then(function (r) {
      if (seq !== renderSeq) return;
      var findings = Array.isArray(r) ? r : (r.findings || []);
      var tabs = ["open", "cleared"].map(function (s) {
        return '<a class="tab' + (s === state ? " on" : "") + '" href="#/findings?state=' + s + '">' + s + "</a>";
      }).join("");
      app.innerHTML = '<section class="card"><div class="card-head"><h1>Findings</h1><div class="tabs">' + tabs + "</div></div>" +
        findingsTable(findings, false) + "</section>";
    });
  }

  // ---- target ----------------------------------------------------------------------------
  function viewTarget(seq, id, params) {
    var range = params.range || "24h", span = 24 * 3600e3;
    RANGES.forEach(function (r) { if (r[0] === range) span = r[1]; });
    var to = Date.now(), from = to - span;
    return Promise.all([api("/api/targets/" + enc(id)),
                        api("/api/targets/" + enc(id) + "/series?from=" + Math.floor(from) + "&to=" + Math.ceil(to))]).then(function (r) {
      if (seq !== renderSeq) return;
      var t = r[0], s = r[1], l = t.last || {};
      var h = [];
      h.push('<div class="crumbs"><a href="#/">Fleet</a> › <a href="#/devices/' + enc(t.device) + '">' + esc(t.device) + "</a> › " +
        esc(t.service || "(unnamed)") + "</div>");
      h.push('<section class="card"><div class="card-head"><h1>' + esc(t.service || "(unnamed)") + ' <span class="muted">on ' +
        esc(t.device) + "</span></h1>" + (t.worst ? badge(t.worst) : badge(null)) + '<span class="spacer"></span><div class="tabs" id="ranges">' +
        RANGES.map(function (rg) {
          return '<a class="tab' + (rg[0] === range ? " on" : "") + '" href="#/targets/' + enc(id) + "?range=" + rg[0] + '">' + rg[0] + "</a>";
        }).join("") + "</div></div>");
      h.push('<dl class="facts">' +
        fact("Go", esc(t.go_version || "–")) + fact("PID", esc(t.pid || "–")) + fact("Port", esc(t.port || "–")) +
        fact("Pod", esc([t.namespace, t.pod, t.container].filter(Boolean).join(" / ") || "–")) +
        fact("Goroutines", num(l.goroutines)) + fact("Heap in use", bytes(l.heap_inuse)) + fact("RSS", bytes(l.rss_bytes)) +
        fact("Threads", num(l.threads)) + fact("Last seen", when(t.last_seen_ms)) +
        fact("Profile", '<a href="/api/targets/' + enc(id) + '/goroutine.pb.gz" data-download="goroutine-' + esc(id) +
          '.pb.gz">goroutine.pb.gz</a>') + "</dl>");
      var markers = s.markers || [];
      if (markers.length) {
        h.push('<div class="markers">Markers: ' + markers.map(function (m) {
          return '<a href="#/findings/' + enc(m.finding) + '" class="marker ev-' + esc(m.event) + '" title="' + esc(isoTime(m.t)) + '">' +
            esc(m.event) + " " + esc(m.kind || "") + " " + badge(m.confidence) + "</a>";
        }).join(" ") + "</div>");
      }
      if (s.step_ms && s.step_ms > 1) h.push('<p class="muted small">Downsampled: one point per ' + duration(s.step_ms / 1000) + " (last value of each bucket).</p>");
      h.push('<div class="plots"><div class="plot" id="p-gor"></div><div class="plot" id="p-heap"></div>' +
        '<div class="plot" id="p-rss"></div><div class="plot" id="p-thr"></div></div></section>');
      h.push(captureCard());
      h.push('<section class="card"><h2>Captures</h2><div id="captures">' + captureList(t.captures || []) + "</div></section>");
      h.push('<section class="card"><h2>Findings</h2>' + findingsTable(t.findings || [], true) + "</section>");
      app.innerHTML = h.join("");
      wireCapture(seq, id, 0, function () { refreshCaptures(seq, "/api/targets/" + enc(id)); });

      var tt = s.t || [], byState = s.by_state || {};
      var gs = [{ label: "total", values: s.goroutines || [], color: "#212529" }];
      Object.keys(byState).sort().forEach(function (k, i) {
        gs.push({ label: k, values: byState[k], color: STATE_COLORS[i % STATE_COLORS.length] });
      });
      if (s.goroutines_max) gs.push({ label: "total (bucket max)", values: s.goroutines_max, color: "#adb5bd" });
      plot(document.getElementById("p-gor"), "Goroutines by state", tt, gs, { markers: markers, height: 260 });
      plot(document.getElementById("p-heap"), "Heap", tt, [
        { label: "in use", values: s.heap_inuse || [], color: "#4263eb", fill: "rgba(66,99,235,0.08)" },
        { label: "allocated", values: s.heap_alloc || [], color: "#ae3ec9" }], { bytes: true, markers: markers });
      plot(document.getElementById("p-rss"), "RSS", tt, [
        { label: "RSS", values: s.rss_bytes || [], color: "#1098ad", fill: "rgba(16,152,173,0.08)" }], { bytes: true, markers: markers });
      plot(document.getElementById("p-thr"), "Threads and file descriptors", tt, [
        { label: "threads", values: s.threads || [], color: "#f76707" },
        { label: "fds", values: s.fds || [], color: "#74b816" }], { markers: markers });
    });
  }

  // ---- capture now (POST /api/targets/{id}/captures, then poll /api/captures/{id}) -----------
  // The states a capture moves through, each with the time the collector saw it (README "Commands").
  var CAPTURE_EXT = { trace: "trace", "goroutine-debug2": "txt", goroutineleak: "pb.gz", heap: "pb.gz" };
  var CAPTURE_STEPS = [["queued", "created_ms"], ["delivered", "delivered_ms"], ["running", "started_ms"], ["uploaded", "uploaded_ms"]];
  function captureName(c) { return "capture-" + c.id + "-" + c.kind + "." + (CAPTURE_EXT[c.kind] || "bin"); }
  function captureTime(ms) { return ms ? new Date(ms).toISOString().slice(11, 19) : ""; }
  function captureSteps(c) {
    var end = c.state === "failed" || c.state === "expired";
    var steps = CAPTURE_STEPS.map(function (st) {
      var t = st[0] === "uploaded" && end ? null : c[st[1]];
      return '<li data-step="' + st[0] + '" class="' + (t ? "on" : "") + '">' + st[0] +
        (t ? ' <time title="' + esc(isoTime(t)) + '">' + esc(captureTime(t)) + "</time>" : "") + "</li>";
    });
    if (end) steps.push('<li data-step="' + c.state + '" class="on bad">' + c.state +
      (c.state === "failed" && c.uploaded_ms ? ' <time title="' + esc(isoTime(c.uploaded_ms)) + '">' + esc(captureTime(c.uploaded_ms)) + "</time>" : "") + "</li>");
    return '<ol class="capture-steps">' + steps.join("") + "</ol>";
  }
  function captureDownload(c, id) {
    var name = captureName(c);
    return '<a' + (id ? ' id="' + id + '"' : "") + ' class="button" href="/api/captures/' + enc(c.id) + '/data" data-download="' +
      esc(name) + '">Download ' + esc(name) + "</a>";
  }
  function captureCard() {
    return '<section class="card"><h2>Capture now</h2><form id="capture-form" class="capture">' +
      '<select id="capture-kind"><option value="trace">execution trace</option>' +
      '<option value="goroutine-debug2">goroutine dump (debug=2)</option>' +
      '<option value="goroutineleak">goroutineleak profile</option><option value="heap">heap profile</option></select> ' +
      '<label>seconds <input id="capture-seconds" type="number" min="1" max="30" value="2"></label> ' +
      '<button id="capture-go" class="button" type="submit">Capture now</button></form>' +
      '<div id="capture-state" class="muted small"></div></section>';
  }
  // The captures of a target, or those asked for from a finding (its evidence), newest first.
  function captureList(caps) {
    if (!caps.length) return '<p class="muted">No captures yet.</p>';
    var h = ['<table class="list" id="capture-list"><thead><tr><th>Capture</th><th>Kind</th><th>State</th><th>Requested</th><th>Size</th><th></th></tr></thead><tbody>'];
    caps.forEach(function (c) {
      h.push('<tr data-capture="' + esc(c.id) + '" data-state="' + esc(c.state) + '"><td>' + esc(c.id) + "</td><td>" + esc(c.kind) +
        (c.kind === "trace" ? " " + esc(c.seconds) + " s" : "") + "</td><td>" + esc(c.state) + (c.error ? ": " + esc(c.error) : "") +
        (c.cut ? " (cut)" : "") + "</td><td>" + when(c.created_ms) + '</td><td class="num">' + (c.state === "uploaded" ? esc(bytes(c.bytes)) : "–") +
        "</td><td>" + (c.state === "uploaded" ? captureDownload(c) : "") + "</td></tr>");
    });
    h.push("</tbody></table>");
    return h.join("");
  }
  // The page's captures list again, from its target's or finding's document (path).
  function refreshCaptures(seq, path) {
    api(path).then(function (d) {
      var el = document.getElementById("captures");
      if (seq === renderSeq && el) el.innerHTML = captureList(d.captures || []);
    });
  }
  // finding: 0, or the finding the capture is evidence of (stored with it; onDone refreshes its list)
  function wireCapture(seq, target, finding, onDone) {
    var form = document.getElementById("capture-form");
    if (!form) return;
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var kind = document.getElementById("capture-kind").value, body = { kind: kind };
      if (kind === "trace") body.seconds = parseInt(document.getElementById("capture-seconds").value, 10) || 2;
      if (finding) body.finding = Number(finding);
      var out = document.getElementById("capture-state"), btn = document.getElementById("capture-go");
      btn.disabled = true;
      out.className = "muted small";
      out.removeAttribute("data-state");
      out.textContent = "requesting…";
      var hdr = authHeaders();
      hdr["Content-Type"] = "application/json";
      fetch(url("/api/targets/" + enc(target) + "/captures"), { method: "POST", headers: hdr, body: JSON.stringify(body) })
        .then(function (r) {
          return r.json().then(function (b) { if (!r.ok) throw new HttpError(r.status, b.error || r.statusText); return b; });
        }).then(function (b) { poll(b.id); })
        .catch(function (err) { btn.disabled = false; out.textContent = "refused: " + (err.message || err); out.className = "error"; });
      function poll(id) {
        if (seq !== renderSeq) return; // the user went elsewhere
        api("/api/captures/" + enc(id)).then(function (c) {
          out.setAttribute("data-state", c.state);
          var head = "capture " + esc(c.id) + " (" + esc(c.kind) + "): ";
          if (c.state === "uploaded") {
            out.innerHTML = captureSteps(c) + "<p>" + head + esc(bytes(c.bytes)) + (c.cut ? " (cut at the size cap)" : "") + " " +
              captureDownload(c, "capture-download") + "</p>";
          } else if (c.state === "failed" || c.state === "expired") {
            out.innerHTML = captureSteps(c) + "<p>" + head + esc(c.state) + (c.error ? ": " + esc(c.error) : "") + "</p>";
          } else {
            out.innerHTML = captureSteps(c) + "<p>" + head + esc(c.state) + "…</p>";
            setTimeout(function () { poll(id); }, 500);
            return;
          }
          btn.disabled = false;
          if (onDone) onDone(c);
        }).catch(function (err) { out.textContent = "error: " + (err.message || err); btn.disabled = false; });
      }
    });
  }

  // ---- finding ---------------------------------------------------------------------------
  function viewFinding(seq, id) {
    return api("/api/findings/" + enc(id)).then(function (f) {
      if (seq !== renderSeq) return;
      var h = [];
      h.push('<div class="crumbs"><a href="#/">Fleet</a> › <a href="#/devices/' + enc(f.device) + '">' + esc(f.device) + '</a> › <a href="#/targets/' +
        enc(f.target) + '">' + esc(f.service || "(unnamed)") + "</a> › finding " + esc(f.id) + "</div>");
      h.push('<section class="card"><div class="card-head"><h1>' + esc(f.kind) + "</h1>" + badge(f.confidence) +
        '<span class="badge st-' + esc(f.state) + '">' + esc(f.state) + "</span></div>");
      h.push('<div class="site" id="site">' + site(f) + "</div>");
      h.push('<dl class="facts">' +
        fact("Service", '<a href="#/targets/' + enc(f.target) + '">' + esc(f.service || "(unnamed)") + "</a> on " +
          '<a href="#/devices/' + enc(f.device) + '">' + esc(f.device) + "</a>") +
        fact("Goroutines at the site", num(f.count)) +
        fact("Growth", f.growth_per_min === null || f.growth_per_min === undefined ? "–" : Number(f.growth_per_min).toFixed(2) + " / min") +
        fact("Waiting in", esc(f.goroutine_state || "–")) + fact("Oldest wait", duration(f.oldest_wait_s)) +
        fact("First seen", when(f.first_seen_ms)) + fact("Last seen", when(f.last_seen_ms)) +
        fact("Snapshots", num(f.snapshots)) + fact("Go", esc(f.go_version || "–")) +
        fact("Evidence", (f.evidence || []).map(function (e) { return '<span class="chip">' + esc(e) + "</span>"; }).join(" ") || "–") +
        (f.survivors_of ? fact("Survivors", '<span id="survivors">' + num(f.survivors) + " of the " + num(f.survivors_of) +
          " oldest goroutines of an earlier dump still parked, none woke</span>" +
          (f.oldest_id ? ' <span class="muted small">(oldest goroutine ' + esc(f.oldest_id) + ")</span>" : "")) : "") +
        (Array.isArray(f.wait_hist) ? fact("Waiting", ["&lt; 1 min", "1–4 min", "5–29 min", "≥ 30 min"].map(function (l, i) {
          return num(f.wait_hist[i]) + " " + l; }).join(", ")) : "") +
        fact("Fingerprint", "<code>" + esc(f.fingerprint || "–") + "</code>") + "</dl>");
      h.push('<div class="downloads"><a class="button" href="/api/findings/' + enc(f.id) + '/profile.pb.gz" data-download="finding-' +
        esc(f.id) + '.pb.gz">Download profile (pprof)</a> <a class="button secondary" href="/api/targets/' + enc(f.target) +
        '/goroutine.pb.gz" data-download="goroutine-' + esc(f.target) + '.pb.gz">Target goroutine profile</a>' +
        ' <span class="muted small">Open with <code>go tool pprof -traces finding-' + esc(f.id) + ".pb.gz</code></span></div></section>");
      h.push('<div class="two"><section class="card"><h2>Blocked stack</h2><ol class="stack" id="stack">');
      (f.stack || []).forEach(function (fr) {
        var text = typeof fr === "string" ? fr : (fr.function || "?") + (fr.file ? " " + fr.file + ":" + (fr.line || 0) : "");
        var fn = typeof fr === "string" ? fr.split(" ")[0] : fr.function;
        h.push("<li" + (fn === f.function ? ' class="hit"' : "") + "><code>" + esc(text) + "</code></li>");
      });
      if (!(f.stack || []).length) h.push('<li class="muted">no stack stored</li>');
      h.push("</ol>");
      if (f.created_by) h.push('<h3>Created by</h3><p><code class="fn">' + esc(f.created_by) + "</code></p>");
      h.push('</section><section class="card"><h2>Growth</h2><div class="plot" id="p-growth"></div></section></div>');
      h.push(captureCard());
      h.push('<section class="card"><h2>Captures of this finding</h2><div id="captures">' + captureList(f.captures || []) + "</div></section>");
      h.push('<section class="card"><h2>History</h2>');
      var hist = f.history || [];
      if (!hist.length) h.push('<p class="muted">No history.</p>');
      else {
        h.push('<table class="list"><thead><tr><th>Time</th><th>Event</th><th>Confidence</th></tr></thead><tbody>');
        hist.forEach(function (e) {
          h.push("<tr><td>" + esc(isoTime(e.t)) + ' <span class="muted small">(' + esc(ago(e.t)) + ")</span></td><td>" + esc(e.event) +
            "</td><td>" + (e.confidence ? badge(e.confidence) : "–") + "</td></tr>");
        });
        h.push("</tbody></table>");
      }
      h.push("</section>");
      app.innerHTML = h.join("");
      wireCapture(seq, f.target, f.id, function () { refreshCaptures(seq, "/api/findings/" + enc(f.id)); });
      var se = f.series || {};
      var markers = hist.map(function (e) { return { t: e.t, event: e.event, confidence: e.confidence }; });
      plot(document.getElementById("p-growth"), "Goroutines at " + (f.function || "the site"), se.t || [],
        [{ label: "count", values: se.count || [], color: "#d6336c", fill: "rgba(214,51,108,0.10)" }], { markers: markers, height: 260 });
    });
  }

  // ---- router ----------------------------------------------------------------------------
  // A hand-edited hash with a stray '%' must not throw out of the router.
  function dec(v) { try { return decodeURIComponent(v); } catch (e) { return v; } }
  function parseHash() {
    var h = location.hash.replace(/^#/, "") || "/";
    var qi = h.indexOf("?"), path = qi >= 0 ? h.slice(0, qi) : h, params = {};
    if (qi >= 0) h.slice(qi + 1).split("&").forEach(function (kv) {
      var p = kv.split("=");
      if (p[0]) params[dec(p[0])] = dec(p[1] || "");
    });
    return { parts: path.split("/").filter(Boolean).map(dec), params: params };
  }

  function route() {
    clearView();
    var r = parseHash(), p = r.parts, seq = ++renderSeq, view, t0 = performance.now();
    document.querySelectorAll("[data-nav]").forEach(function (a) {
      a.classList.toggle("on", (p[0] || "fleet") === a.getAttribute("data-nav") ||
        (a.getAttribute("data-nav") === "findings" && p[0] === "findings" && !p[1]));
    });
    if (!p.length) view = viewFleet(seq, r.params);
    else if (p[0] === "devices" && p[1]) view = viewDevice(seq, p[1]);
    else if (p[0] === "targets" && p[1]) view = viewTarget(seq, p[1], r.params);
    else if (p[0] === "findings" && p[1]) view = viewFinding(seq, p[1]);
    else if (p[0] === "findings") view = viewFindings(seq, r.params);
    else view = Promise.reject(new HttpError(404, "no such page"));
    setStatus("loading…", "");
    view.then(function () {
      if (seq !== renderSeq) return;
      setStatus("updated " + new Date().toLocaleTimeString(), "ok");
      document.body.setAttribute("data-view", p[0] || "fleet");
      // fetch + render time of the view, read by the browser tests to keep the page fast
      document.body.setAttribute("data-load-ms", String(Math.round(performance.now() - t0)));
      document.body.setAttribute("data-ready", String(seq));
      // the overview follows the fleet live; other pages stay still while someone reads them
      if (!p.length) refreshTimer = setInterval(function () { if (!document.hidden) refresh(seq, r.params); }, 15000);
    }, function (e) {
      if (seq === renderSeq) { showError(e); document.body.setAttribute("data-ready", String(seq)); }
    });
  }
  function refresh(seq, params) {
    var ae = document.activeElement, focusFilter = ae && ae.id === "filter";
    var f = document.getElementById("filter"), b = document.getElementById("only-bad");
    var wrap = document.querySelector(".grid-wrap"), top = wrap ? wrap.scrollTop : 0, left = wrap ? wrap.scrollLeft : 0;
    params = { q: f ? f.value : params.q, bad: b ? b.checked : params.bad };
    viewFleet(seq, params).then(function () {
      var w2 = document.querySelector(".grid-wrap");
      if (w2) { w2.scrollTop = top; w2.scrollLeft = left; }
      if (focusFilter && document.getElementById("filter")) document.getElementById("filter").focus();
      setStatus("updated " + new Date().toLocaleTimeString(), "ok");
    }, function () { setStatus("refresh failed", "bad"); });
  }

  window.addEventListener("hashchange", route);
  route();
})();
