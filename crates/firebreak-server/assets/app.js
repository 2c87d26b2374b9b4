// Firebreak UI behaviour: keyboard navigation of lists, row selection, confirmations.
// Loaded as an external file (the CSP forbids inline script); pages work without it.
(function () {
  "use strict";

  function rows(table) {
    return Array.prototype.slice.call(table.querySelectorAll("tbody tr[data-href]"));
  }

  function focusRow(table, index) {
    var list = rows(table);
    if (!list.length) return;
    index = Math.max(0, Math.min(list.length - 1, index));
    list[index].focus();
  }

  function currentIndex(table) {
    return rows(table).indexOf(document.activeElement);
  }

  // j / k / arrows move between rows, Enter or o opens, x toggles the row's checkbox,
  // / focuses the search field.
  document.addEventListener("keydown", function (ev) {
    var t = ev.target;
    var typing = t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable);
    if (ev.key === "/" && !typing) {
      // the page's own search field first, else the header's
      var q = document.querySelector("main input[type=search]") || document.querySelector("input[type=search]");
      if (q) { ev.preventDefault(); q.focus(); }
      return;
    }
    if (typing || ev.altKey || ev.ctrlKey || ev.metaKey) return;
    var table = document.querySelector("table[data-keys]");
    if (!table) return;
    var i = currentIndex(table);
    if (ev.key === "j" || ev.key === "ArrowDown") { ev.preventDefault(); focusRow(table, i < 0 ? 0 : i + 1); }
    else if (ev.key === "k" || ev.key === "ArrowUp") { ev.preventDefault(); focusRow(table, i < 0 ? 0 : i - 1); }
    else if ((ev.key === "Enter" || ev.key === "o") && i >= 0) {
      ev.preventDefault();
      window.location.href = rows(table)[i].getAttribute("data-href");
    } else if (ev.key === "x" && i >= 0) {
      var box = rows(table)[i].querySelector("input[type=checkbox]");
      if (box) { ev.preventDefault(); box.checked = !box.checked; box.dispatchEvent(new Event("change", { bubbles: true })); }
    }
  });

  // a click on a row (not on a control or a link) opens it
  document.addEventListener("click", function (ev) {
    var tr = ev.target.closest && ev.target.closest("tbody tr[data-href]");
    if (!tr || ev.target.closest("a, input, button, label, select, textarea")) return;
    window.location.href = tr.getAttribute("data-href");
  });

  // "select all" boxes and the selected-row highlight
  document.addEventListener("change", function (ev) {
    var t = ev.target;
    if (t.matches && t.matches("input[data-select-all]")) {
      var table = t.closest("table");
      table.querySelectorAll("tbody input[type=checkbox]").forEach(function (b) {
        b.checked = t.checked;
        var row = b.closest("tr");
        if (row) row.classList.toggle("selected", b.checked);
      });
    } else if (t.matches && t.matches("tbody input[type=checkbox]")) {
      var tr = t.closest("tr");
      if (tr) tr.classList.toggle("selected", t.checked);
    }
    var count = document.querySelector("[data-selected-count]");
    if (count) count.textContent = String(document.querySelectorAll("tbody input[name=ids]:checked").length);
  });

  // a file picked for a text field (CSV import) is read into it, so it can be checked first
  document.addEventListener("change", function (ev) {
    var t = ev.target;
    var into = t.getAttribute && t.getAttribute("data-file-into");
    if (!into || !t.files || !t.files[0]) return;
    var area = document.getElementById(into);
    var reader = new FileReader();
    reader.onload = function () { area.value = String(reader.result); };
    reader.readAsText(t.files[0]);
  });

  // views of the ticket list saved by the user, in this browser (name -> query string)
  var VIEWS = "firebreak.ticket-views";
  function loadViews() {
    try { return JSON.parse(window.localStorage.getItem(VIEWS) || "[]"); } catch (e) { return []; }
  }
  function renderViews() {
    var box = document.querySelector("[data-saved-views]");
    if (!box) return;
    while (box.firstChild) box.removeChild(box.firstChild);
    loadViews().forEach(function (v, i) {
      var a = document.createElement("a");
      a.href = "/tickets" + v.query;
      a.textContent = v.name;
      var x = document.createElement("button");
      x.type = "button";
      x.className = "secondary inline-x";
      x.textContent = "\u00d7";
      x.setAttribute("aria-label", "Forget the view " + v.name);
      x.addEventListener("click", function () {
        var all = loadViews();
        all.splice(i, 1);
        window.localStorage.setItem(VIEWS, JSON.stringify(all));
        renderViews();
      });
      box.appendChild(document.createTextNode(i ? " · " : "Saved: "));
      box.appendChild(a);
      box.appendChild(x);
    });
  }
  document.addEventListener("click", function (ev) {
    var b = ev.target.closest && ev.target.closest("[data-save-view]");
    if (!b) return;
    var name = window.prompt("A name for this view");
    if (!name || !name.trim()) return;
    var all = loadViews().filter(function (v) { return v.name !== name.trim(); });
    all.push({ name: name.trim().slice(0, 60), query: window.location.search });
    window.localStorage.setItem(VIEWS, JSON.stringify(all));
    renderViews();
  });
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", renderViews);
  else renderViews();

  // Live refresh. An element with data-live="topic ..." (and hx-get, hx-trigger="fb-live") is
  // re-fetched when /live (server-sent events, names of kinds of change only) says something of
  // that kind changed, at most once a second, and every 60 s in any case (a proxy that buffers
  // the stream, a lost connection). A list with selected rows or a focused field waits until
  // they are let go. The stream is closed while the page is hidden, so background tabs hold no
  // connection (browsers allow six per site over HTTP/1.1).
  var LIVE_GAP = 1000, LIVE_FALLBACK = 60000;
  var liveEls = Array.prototype.slice.call(document.querySelectorAll("[data-live]"));
  function liveHeld(el) {
    var a = document.activeElement;
    var typing = a && a !== el && el.contains(a) && (a.tagName === "TEXTAREA" || a.tagName === "SELECT" ||
      (a.tagName === "INPUT" && !/^(checkbox|radio|button|submit)$/.test(a.type)));
    return !!el.querySelector("input:checked") || !!typing;
  }
  function liveRefresh(el) {
    if (!window.htmx) return;
    if (liveHeld(el)) { el.fbLivePending = true; return; }
    var wait = (el.fbLiveAt || 0) + LIVE_GAP - Date.now();
    if (wait > 0) {
      if (!el.fbLiveTimer) el.fbLiveTimer = setTimeout(function () { el.fbLiveTimer = null; liveRefresh(el); }, wait);
      return;
    }
    el.fbLivePending = false;
    el.fbLiveAt = Date.now();
    // keep the keyboard's place in a list across the refresh
    var a = document.activeElement;
    el.fbLiveFocus = a && el.contains(a) && a.getAttribute("data-href");
    window.htmx.trigger(el, "fb-live");
  }
  function liveAll() { liveEls.forEach(liveRefresh); }
  if (liveEls.length) {
    liveEls.forEach(function (el) {
      el.addEventListener("htmx:after:swap", function () {
        var href = el.fbLiveFocus;
        el.fbLiveFocus = null;
        if (!href) return;
        var rows = el.querySelectorAll("[data-href]");
        for (var i = 0; i < rows.length; i++) {
          if (rows[i].getAttribute("data-href") === href) { rows[i].focus(); break; }
        }
      });
    });
    // a held list refreshes once it is let go
    var release = function () {
      setTimeout(function () {
        liveEls.forEach(function (el) { if (el.fbLivePending && !liveHeld(el)) liveRefresh(el); });
      }, 0);
    };
    document.addEventListener("change", release);
    document.addEventListener("focusout", release);
    setInterval(function () { if (!document.hidden) liveAll(); }, LIVE_FALLBACK);

    var topics = {};
    liveEls.forEach(function (el) {
      el.getAttribute("data-live").split(/\s+/).forEach(function (t) { if (t) topics[t] = true; });
    });
    // the stream starts with `*` when anything changed since this page was read (a change
    // between the page and the stream, or while the stream was down or closed)
    var since = document.body.getAttribute("data-live-mark") || "";
    var source = null;
    var open = function () {
      if (source || !window.EventSource) return;
      source = new EventSource("/live?since=" + encodeURIComponent(since));
      Object.keys(topics).forEach(function (t) {
        source.addEventListener(t, function () {
          liveEls.forEach(function (el) {
            if (el.getAttribute("data-live").split(/\s+/).indexOf(t) >= 0) liveRefresh(el);
          });
        });
      });
      source.addEventListener("*", liveAll);
      // EventSource gives up for good on an answer other than 200 (a 503 while the database
      // is away, a proxy's 502): try again a little later, while the page is visible
      source.onerror = function () {
        if (source && source.readyState === 2) {
          source = null;
          setTimeout(function () { if (!document.hidden) open(); }, 10000);
        }
      };
    };
    var close = function () { if (source) { source.close(); source = null; } };
    document.addEventListener("visibilitychange", function () {
      if (document.hidden) close();
      else open();
    });
    if (!document.hidden) open();
  }

  // forms that need a second thought
  document.addEventListener("submit", function (ev) {
    var f = ev.target;
    var msg = f.getAttribute && f.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) ev.preventDefault();
  });
})();
