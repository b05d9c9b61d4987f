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
// - graphs (`data-graph`) are drawn with uPlot, a line at every change, drag to zoom.
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

  function setLive(up) {
    var badges = document.querySelectorAll("[data-live-status]");
    if (up) downSince = null;
    else if (!downSince) downSince = new Date();
    for (var i = 0; i < badges.length; i++) {
      badges[i].textContent = up
        ? "live"
        : "reconnecting since " + clock.format(downSince);
      badges[i].classList.toggle("down", !up);
    }
  }

  // ---- streams ----
  var lastIds = new Map(); // stream URL -> last event id seen
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
      url +=
        (url.indexOf("?") >= 0 ? "&" : "?") +
        "after=" +
        encodeURIComponent(last);
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
      setLive(false);
      if (es.readyState === 2 && self.es === es) {
        // The server refused the stream (signed out, gone): try again, more slowly.
        es.close();
        self.es = null;
        var delay = Math.min(30000, 1000 * Math.pow(2, self.retry++));
        window.setTimeout(function () {
          self.open();
        }, delay);
      }
    };
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

  // Streamed rows: put each element with an id in place.
  document.addEventListener("htmx:sseBeforeMessage", function (e) {
    var container = e.target;
    var mode = container.getAttribute("data-rows");
    if (!mode) return;
    e.preventDefault();
    var data = e.detail && e.detail.data;
    if (!data) return;
    var template = document.createElement("template");
    var rows = /^\s*<tr/i.test(data);
    template.innerHTML = rows ? "<table><tbody>" + data + "</tbody></table>" : data;
    var root = rows ? template.content.querySelector("tbody") : template.content;
    var items = Array.prototype.slice.call(root.children);
    for (var i = items.length - 1; i >= 0; i--) {
      var node = items[i];
      if (!node.id) continue;
      var existing = document.getElementById(node.id);
      if (existing) {
        existing.replaceWith(node);
      } else if (mode === "prepend") {
        container.insertBefore(node, container.firstChild);
      } else {
        continue;
      }
      formatTimes(node);
      if (window.htmx) window.htmx.process(node);
    }
  });

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
          el.textContent = r.body.error || "This graph cannot be drawn.";
          el.classList.add("error");
          return;
        }
        render(el, r.body);
      })
      .catch(function () {
        el.textContent = "This graph cannot be loaded; reload the page.";
        el.classList.add("error");
      });
  }

  function render(el, data) {
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
          return {
            label: s.name,
            stroke: palette[i % palette.length],
            width: 1.5,
            spanGaps: false,
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
    el.appendChild(tip);
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
      el.appendChild(list);
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
    }, 150);
  });

  if (window.matchMedia) {
    var dark = window.matchMedia("(prefers-color-scheme: dark)");
    if (dark.addEventListener) dark.addEventListener("change", redrawGraphs);
  }

  document.addEventListener("htmx:load", function (e) {
    formatTimes(e.target);
    drawGraphs(e.target);
  });

  formatTimes(document);
  drawGraphs(document);
  window.setInterval(function () {
    formatTimes(document);
  }, 30000);
})();
