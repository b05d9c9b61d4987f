// Gantry's dashboard: what the pages need beyond htmx. Loaded with `defer` after htmx, its
// SSE extension and uPlot. No inline script anywhere: the Content-Security-Policy forbids it.
//
// - every htmx request carries the session's CSRF value (X-CSRF-Token);
// - times are shown in the browser's time zone, with a relative time beside them;
// - live pages: the SSE extension's EventSources are replaced by LiveSource, which pauses
//   while the tab is hidden and resumes after the last event it saw, and keeps the page's
//   "live" / "reconnecting since …" status true;
// - streamed rows (`data-rows`) are put in place by id: replaced when on the page, added at
//   the top when the container says `prepend`;
// - graphs (`data-graph`) are drawn with uPlot, a line at every change, drag to zoom;
// - a table box (`.scroll`) that is too narrow for its table can be scrolled by keyboard.
(function () {
  "use strict";

  var csrf = document.querySelector('meta[name="csrf-token"]');

  document.addEventListener("htmx:configRequest", function (e) {
    if (csrf) e.detail.headers["X-CSRF-Token"] = csrf.getAttribute("content");
  });

  // ---- times ----
  var absolute = new Intl.DateTimeFormat(undefined, {
    dateStyle: "medium",
    timeStyle: "medium",
  });
  var clock = new Intl.DateTimeFormat(undefined, { timeStyle: "medium" });
  var relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });

  function ago(date) {
    var secs = Math.round((date.getTime() - Date.now()) / 1000);
    var units = [
      ["day", 86400],
      ["hour", 3600],
      ["minute", 60],
    ];
    for (var i = 0; i < units.length; i++) {
      if (Math.abs(secs) >= units[i][1]) {
        return relative.format(Math.round(secs / units[i][1]), units[i][0]);
      }
    }
    return relative.format(secs, "second");
  }

  function formatTimes(root) {
    var times = (root || document).querySelectorAll("time[data-rel]");
    for (var i = 0; i < times.length; i++) {
      var t = times[i];
      var d = new Date(t.getAttribute("datetime"));
      if (isNaN(d.getTime())) continue;
      t.textContent = absolute.format(d) + " (" + ago(d) + ")";
      t.title = d.toISOString();
    }
  }

  // ---- live status ----
  var downSince = null;

  // `word` replaces the usual text: "finished" when a stream has said all it will,
  // "signed out" when the session ended.
  function setLive(up, word) {
    var badges = document.querySelectorAll("[data-live-status]");
    if (up) downSince = null;
    else if (!downSince) downSince = new Date();
    for (var i = 0; i < badges.length; i++) {
      badges[i].textContent =
        word || (up ? "live" : "reconnecting since " + clock.format(downSince));
      badges[i].classList.toggle("down", !up);
    }
  }

  // ---- streams ----
  var lastIds = new Map(); // stream URL -> last event id seen
  // Leaving the page closes its streams, which looks like an error to them: ignore it.
  var leaving = false;
  window.addEventListener("beforeunload", function () { leaving = true; });
  window.addEventListener("pagehide", function () { leaving = true; });
  window.addEventListener("pageshow", function () { leaving = false; });
  var sources = new Set();

  function LiveSource(url) {
    this.url = url;
    this.handlers = new Map();
    this.readyState = 0;
    this.onopen = null;
    this.onerror = null;
    this.closed = false;
    this.retry = 0;
    this.es = null;
    sources.add(this);
    this.open();
  }

  LiveSource.prototype.open = function () {
    var self = this;
    if (self.closed || self.es || document.hidden) return;
    var url = self.url;
    var last = lastIds.get(self.url);
    if (last) {
      // Resume after the last event seen (replacing the `after` the page started from).
      var u = new URL(url, window.location.href);
      u.searchParams.set("after", last);
      url = u.pathname + u.search;
    }
    var es = new EventSource(url);
    self.es = es;
    es.onopen = function () {
      self.readyState = 1;
      self.retry = 0;
      setLive(true);
      if (self.onopen) self.onopen({ type: "open" });
    };
    es.onerror = function () {
      if (leaving) return;
      setLive(false);
      if (es.readyState === 2 && self.es === es) {
        // The server refused the stream (restarting, or the page is stale): try again,
        // more slowly.
        es.close();
        self.es = null;
        var delay = Math.min(30000, 1000 * Math.pow(2, self.retry++));
        window.setTimeout(function () {
          self.open();
        }, delay);
      }
    };
    // The session ended (signed out here or in another tab, or the token was revoked):
    // stop following and say so.
    es.addEventListener("signed-out", function () {
      self.close();
      setLive(false, "signed out: reload to sign in again");
    });
    // The stream has said all it will (a rollout finished): stop following.
    es.addEventListener("end", function () {
      self.close();
      setLive(true, "finished");
    });
    es.addEventListener("ready", function (ev) {
      if (ev.lastEventId) lastIds.set(self.url, ev.lastEventId);
    });
    self.handlers.forEach(function (_fns, type) {
      self.listen(type);
    });
  };

  LiveSource.prototype.listen = function (type) {
    var self = this;
    var es = self.es;
    if (!es) return;
    es.addEventListener(type, function (ev) {
      if (self.es !== es) return;
      if (ev.lastEventId) lastIds.set(self.url, ev.lastEventId);
      var fns = self.handlers.get(type);
      if (fns) fns.forEach(function (fn) { fn(ev); });
    });
  };

  LiveSource.prototype.addEventListener = function (type, fn) {
    if (!this.handlers.has(type)) {
      this.handlers.set(type, new Set());
      this.listen(type);
    }
    this.handlers.get(type).add(fn);
  };

  LiveSource.prototype.removeEventListener = function (type, fn) {
    var fns = this.handlers.get(type);
    if (fns) fns.delete(fn);
  };

  LiveSource.prototype.pause = function () {
    if (this.es) {
      this.es.close();
      this.es = null;
    }
  };

  LiveSource.prototype.close = function () {
    this.closed = true;
    this.readyState = 2;
    this.pause();
    sources.delete(this);
  };

  if (window.htmx) {
    window.htmx.createEventSource = function (url) {
      return new LiveSource(url);
    };
  }

  document.addEventListener("visibilitychange", function () {
    sources.forEach(function (s) {
      if (document.hidden) s.pause();
      else s.open();
    });
  });

  // The source of each top-level element of server HTML, in order. maud escapes every "<"
  // and ">" in text and attribute values, so each "<" begins a tag.
  var VOID = /^(area|base|br|col|embed|hr|img|input|link|meta|source|track|wbr)$/i;

  function topLevel(html) {
    var parts = [];
    var tag = /<(\/?)([a-zA-Z][\w:-]*)[^>]*>/g;
    var depth = 0;
    var start = 0;
    var m;
    while ((m = tag.exec(html))) {
      var closing = m[1] === "/";
      if (depth === 0 && !closing) start = m.index;
      if (closing) depth--;
      else if (!VOID.test(m[2]) && !/\/>$/.test(m[0])) depth++;
      if (depth === 0) parts.push(html.slice(start, tag.lastIndex));
    }
    return parts;
  }

  // The elements of a streamed fragment. A fragment may mix table rows with other elements
  // (the rollout stream sends its summary, then the changed host rows), and the HTML parser
  // drops a <tr> that is not inside a table; so each top-level element is parsed on its own
  // in a <template>, whose parser takes a lone <tr> as a row.
  function elements(html) {
    var out = [];
    topLevel(html).forEach(function (part) {
      var template = document.createElement("template");
      template.innerHTML = part;
      if (template.content.firstElementChild) out.push(template.content.firstElementChild);
    });
    return out;
  }

  var MAX_ROWS = 500;

  // Streamed rows: put each element with an id in place; a `created` row the page does not
  // have yet goes on top where the container says `prepend` (an `updated` one only replaces:
  // a change off this page stays off it).
  document.addEventListener("htmx:sseBeforeMessage", function (e) {
    var container = e.target;
    var mode = container.getAttribute("data-rows");
    if (!mode) return;
    e.preventDefault();
    var data = e.detail && e.detail.data;
    if (!data) return;
    var items = elements(data);
    for (var i = items.length - 1; i >= 0; i--) {
      var node = items[i];
      if (!node.id) continue;
      var existing = document.getElementById(node.id);
      if (existing) {
        existing.replaceWith(node);
      } else if (mode === "prepend" && e.detail.type !== "updated") {
        container.insertBefore(node, container.firstChild);
      } else {
        continue;
      }
      formatTimes(node);
      if (window.htmx) window.htmx.process(node);
    }
    // A tab left open on a busy log keeps the newest rows only.
    if (mode === "prepend") {
      while (container.children.length > MAX_ROWS) container.lastElementChild.remove();
    }
    markScrollers();
  });

  // ---- wide tables ----
  // A table wider than the screen scrolls inside its `.scroll` box. Keyboard users can only
  // scroll a box they can focus (WCAG 2.1.1), so a box that overflows takes focus, named
  // after its table; one that fits again gives it back.
  function markScrollers() {
    var boxes = document.querySelectorAll(".scroll");
    for (var i = 0; i < boxes.length; i++) {
      var box = boxes[i];
      var over = box.scrollWidth > box.clientWidth + 1;
      var marked = box.hasAttribute("data-scroller");
      if (over && !marked) {
        box.setAttribute("data-scroller", "");
        box.setAttribute("tabindex", "0");
        var caption = box.querySelector("caption");
        var table = box.querySelector("table");
        var section = box.closest("section[aria-labelledby]");
        if (caption && caption.textContent.trim()) {
          box.setAttribute("aria-label", caption.textContent.trim());
        } else if (table && table.getAttribute("aria-labelledby")) {
          box.setAttribute("aria-labelledby", table.getAttribute("aria-labelledby"));
        } else if (section) {
          box.setAttribute("aria-labelledby", section.getAttribute("aria-labelledby"));
        }
        if (box.hasAttribute("aria-label") || box.hasAttribute("aria-labelledby")) {
          box.setAttribute("role", "region");
        }
      } else if (!over && marked) {
        ["data-scroller", "tabindex", "role", "aria-label", "aria-labelledby"].forEach(function (a) {
          box.removeAttribute(a);
        });
      }
    }
  }

  // ---- graphs ----
  function cssVar(name, fallback) {
    var v = getComputedStyle(document.documentElement).getPropertyValue(name);
    return v ? v.trim() : fallback;
  }

  function markerPlugin(changes, color) {
    return {
      hooks: {
        draw: [
          function (u) {
            var ctx = u.ctx;
            ctx.save();
            ctx.strokeStyle = color;
            ctx.lineWidth = Math.max(1, devicePixelRatio);
            ctx.setLineDash([4 * devicePixelRatio, 3 * devicePixelRatio]);
            for (var i = 0; i < changes.length; i++) {
              var x = Math.round(u.valToPos(changes[i].at, "x", true));
              if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
              ctx.beginPath();
              ctx.moveTo(x, u.bbox.top);
              ctx.lineTo(x, u.bbox.top + u.bbox.height);
              ctx.stroke();
            }
            ctx.restore();
          },
        ],
      },
    };
  }

  function nearestChange(u, changes, left) {
    var best = null;
    var bestDist = 6;
    for (var i = 0; i < changes.length; i++) {
      var x = u.valToPos(changes[i].at, "x");
      var d = Math.abs(x - left);
      if (d <= bestDist) {
        best = changes[i];
        bestDist = d;
      }
    }
    return best;
  }

  // The tip and the list of changes go after the graph, not inside it: the graph's element
  // is an image to assistive technology (role="img"), whose content is not read and must
  // hold nothing focusable.
  function clearExtras(el) {
    if (el._extras) el._extras.forEach(function (n) { n.remove(); });
    el._extras = null;
  }

  // The usual distance, in points, between a series' known values: a series sent every
  // minute into 10-second slots has four or five empty slots between values, which are not
  // gaps in the data.
  function usualStep(values) {
    var steps = [];
    var last = -1;
    for (var i = 0; i < values.length; i++) {
      if (values[i] == null) continue;
      if (last >= 0) steps.push(i - last);
      last = i;
    }
    if (!steps.length) return 1;
    steps.sort(function (a, b) { return a - b; });
    return steps[Math.floor(steps.length / 2)];
  }

  // Only gaps wider than twice the usual step break the line.
  function realGaps(step) {
    return function (u, _sidx, idx0, idx1, nullGaps) {
      if (step <= 1) return nullGaps;
      var perPoint = u.bbox.width / Math.max(1, idx1 - idx0);
      var limit = 2 * step * perPoint;
      return nullGaps.filter(function (g) { return g[1] - g[0] > limit; });
    };
  }

  function drawGraph(el) {
    if (!window.uPlot || el.getAttribute("data-drawn")) return;
    el.setAttribute("data-drawn", "1");
    var width = Math.max(el.clientWidth, 280);
    fetch(el.getAttribute("data-graph") + "&points=" + Math.round(width), {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    })
      .then(function (res) {
        return res.json().then(function (body) {
          return { ok: res.ok, body: body };
        });
      })
      .then(function (r) {
        if (!r.ok) {
          clearExtras(el);
          el.textContent = r.body.error || "This graph cannot be drawn.";
          el.classList.add("error");
          return;
        }
        render(el, r.body);
      })
      .catch(function () {
        clearExtras(el);
        el.textContent = "This graph cannot be loaded; reload the page.";
        el.classList.add("error");
      });
  }

  function render(el, data) {
    clearExtras(el);
    el.textContent = "";
    if (!data.times.length || !data.series.length) {
      el.textContent = "No points in this range.";
      return;
    }
    var palette = [1, 2, 3, 4, 5, 6].map(function (i) {
      return cssVar("--series-" + i, "#1f6feb");
    });
    var fg = cssVar("--muted", "#555");
    var grid = cssVar("--grid", "#ddd");
    var mark = cssVar("--marker", "#b35900");
    var tip = document.createElement("div");
    tip.className = "graph-tip";
    tip.setAttribute("role", "status");
    var changes = data.changes || [];
    var u;
    var opts = {
      width: Math.max(el.clientWidth, 280),
      height: 240,
      series: [{}].concat(
        data.series.map(function (s, i) {
          var step = usualStep(s.values);
          return {
            label: s.name,
            stroke: palette[i % palette.length],
            width: 1.5,
            spanGaps: false,
            gaps: realGaps(step),
            points: { show: s.values.filter(function (v) { return v != null; }).length < 3 },
          };
        })
      ),
      axes: [
        { stroke: fg, grid: { stroke: grid }, ticks: { stroke: grid } },
        { stroke: fg, grid: { stroke: grid }, ticks: { stroke: grid } },
      ],
      cursor: { drag: { x: true, y: false } },
      plugins: [markerPlugin(changes, mark)],
      hooks: {
        setCursor: [
          function (u) {
            var c = u.cursor.left == null ? null : nearestChange(u, changes, u.cursor.left);
            if (!c) {
              tip.textContent = "";
              tip.classList.remove("shown");
              return;
            }
            tip.textContent = c.kind + ": " + c.summary + " (" + c.actor + ")";
            tip.classList.add("shown");
          },
        ],
        setSelect: [
          function (u) {
            if (u.select.width < 2 || !el.hasAttribute("data-zoom-url")) return;
            var from = Math.floor(u.posToVal(u.select.left, "x"));
            var until = Math.ceil(u.posToVal(u.select.left + u.select.width, "x"));
            var url = new URL(window.location.href);
            url.searchParams.set("from", String(from));
            url.searchParams.set("until", String(until));
            window.history.replaceState(null, "", url.toString());
          },
        ],
      },
    };
    u = new window.uPlot(
      opts,
      [data.times].concat(
        data.series.map(function (s) {
          return s.values;
        })
      ),
      el
    );
    u.over.addEventListener("click", function () {
      if (u.cursor.left == null) return;
      var c = nearestChange(u, changes, u.cursor.left);
      if (c) window.location.assign(c.url);
    });
    el.after(tip);
    el._extras = [tip];
    if (changes.length) {
      var list = document.createElement("ul");
      list.className = "markers small";
      changes.forEach(function (c) {
        var li = document.createElement("li");
        var t = document.createElement("time");
        t.setAttribute("datetime", new Date(c.at * 1000).toISOString());
        t.setAttribute("data-rel", "");
        var a = document.createElement("a");
        a.href = c.url;
        a.textContent = c.summary;
        li.appendChild(t);
        li.appendChild(document.createTextNode(" " + c.kind + ": "));
        li.appendChild(a);
        li.appendChild(document.createTextNode(" (" + c.actor + ")"));
        list.appendChild(li);
      });
      tip.after(list);
      el._extras.push(list);
      formatTimes(list);
    }
    el._plot = u;
  }

  function drawGraphs(root) {
    var els = (root || document).querySelectorAll("[data-graph]");
    for (var i = 0; i < els.length; i++) drawGraph(els[i]);
  }

  function redrawGraphs() {
    var els = document.querySelectorAll("[data-graph][data-drawn]");
    for (var i = 0; i < els.length; i++) {
      if (els[i]._plot) els[i]._plot.destroy();
      els[i]._plot = null;
      els[i].removeAttribute("data-drawn");
      drawGraph(els[i]);
    }
  }

  var resizeTimer = null;
  window.addEventListener("resize", function () {
    window.clearTimeout(resizeTimer);
    resizeTimer = window.setTimeout(function () {
      var els = document.querySelectorAll("[data-graph]");
      for (var i = 0; i < els.length; i++) {
        if (els[i]._plot) {
          els[i]._plot.setSize({ width: Math.max(els[i].clientWidth, 280), height: 240 });
        }
      }
      markScrollers();
    }, 150);
  });

  if (window.matchMedia) {
    var dark = window.matchMedia("(prefers-color-scheme: dark)");
    if (dark.addEventListener) dark.addEventListener("change", redrawGraphs);
  }

  document.addEventListener("htmx:load", function (e) {
    formatTimes(e.target);
    drawGraphs(e.target);
    markScrollers();
  });

  formatTimes(document);
  drawGraphs(document);
  markScrollers();
  window.setInterval(function () {
    formatTimes(document);
    markScrollers();
  }, 30000);
})();
