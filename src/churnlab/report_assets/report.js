
(function () {
  "use strict";
  var DASH = "\u2014";
  var UNITS = [[1e3, "k"], [1e6, "M"], [1e9, "B"], [1e12, "T"]];
  function tenths(n) { return n % 10 === 0 ? String(n / 10) : Math.floor(n / 10) + "." + (n % 10); }
  function groupInt(n) { return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ","); }
  function finite(v) { return typeof v === "number" && isFinite(v); }
  function fmtMoney(v, cur) {
    if (!finite(v)) return DASH;
    var a = Math.abs(v), text = null;
    if (a < 1000) {
      var n0 = Math.floor(a + 0.5);
      if (n0 < 1000) text = String(n0); else a = 1000;
    }
    if (text === null) {
      for (var i = 0; i < UNITS.length; i++) {
        var s = a / UNITS[i][0];
        var n = s < 100 ? Math.floor(s * 10 + 0.5) : Math.floor(s + 0.5) * 10;
        if (n < 10000 || i === UNITS.length - 1) { text = tenths(n) + UNITS[i][1]; break; }
      }
    }
    return (v < 0 && text !== "0" ? "-" : "") + (cur || "") + text;
  }
  function fmtPct(v) {
    if (!finite(v)) return DASH;
    var n = Math.floor(Math.abs(v) * 1000 + 0.5);
    return (v < 0 && n > 0 ? "-" : "") + Math.floor(n / 10) + "." + (n % 10) + "%";
  }
  function fmtInt(v) {
    if (!finite(v)) return DASH;
    var n = Math.floor(Math.abs(v) + 0.5);
    return (v < 0 && n > 0 ? "-" : "") + groupInt(n);
  }
  function fmtNum(v) {
    if (!finite(v)) return DASH;
    if (v === Math.floor(v)) return fmtInt(v);
    var n = Math.floor(Math.abs(v) * 100 + 0.5), c = n % 100;
    var sign = v < 0 && n > 0 ? "-" : "";
    return sign + groupInt(Math.floor(n / 100)) + "." + (c < 10 ? "0" : "") + c;
  }
  function fmtPoints(v) {
    if (!finite(v)) return DASH;
    var n = Math.floor(Math.abs(v) * 10 + 0.5);
    return (n === 0 ? "" : (v > 0 ? "+" : "-")) + Math.floor(n / 10) + "." + (n % 10);
  }
  function fmt(type, v, cur) {
    if (v === null || v === undefined) return DASH;
    switch (type) {
      case "money": return fmtMoney(v, cur);
      case "pct": return fmtPct(v);
      case "int": return fmtInt(v);
      case "num": return fmtNum(v);
      case "points": return fmtPoints(v);
      default: return String(v);
    }
  }
  window.churnlabFormat = {
    money: fmtMoney, pct: fmtPct, int: fmtInt, num: fmtNum, points: fmtPoints
  };

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }

  function Table(root, spec) {
    var self = this;
    this.spec = spec;
    this.rows = spec.rows;
    this.table = document.getElementById(spec.id);
    this.tbody = this.table.tBodies[0];
    this.count = document.getElementById(spec.id + "-count");
    this.pageLabel = document.getElementById(spec.id + "-page");
    this.expandable = spec.reasons.length > 0 || spec.details.length > 0;
    this.ncols = spec.columns.length + (this.expandable ? 1 : 0);
    this.sortCol = -1; this.sortDir = 0; this.page = 0;
    this.filterVals = spec.filters.map(function () { return null; });
    this.query = "";
    this.expanded = {};
    this.collator = new Intl.Collator(undefined, {numeric: true, sensitivity: "base"});
    this.badges = spec.badges || {};
    this.view = this.rows.map(function (_, i) { return i; });
    this.haystack = null;

    var heads = this.table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th) {
      var key = th.getAttribute("data-key");
      if (!key) return;
      var col = -1;
      spec.columns.forEach(function (c, i) { if (c.key === key) col = i; });
      th.addEventListener("click", function () { self.sortBy(col, th); });
    });
    spec.filters.forEach(function (f, i) {
      var sel = document.getElementById(f.id);
      if (!sel) return;
      sel.addEventListener("change", function () {
        self.filterVals[i] = sel.value === "" ? null : {v: f.options[Number(sel.value)]};
        self.apply();
      });
    });
    var search = document.getElementById(spec.id + "-search");
    if (search) {
      search.addEventListener("input", function () {
        self.query = search.value.trim().toLowerCase();
        self.apply();
      });
    }
    var reset = document.getElementById(spec.id + "-reset");
    if (reset) reset.addEventListener("click", function () { self.reset(); });
    var nav = {first: function () { self.page = 0; }, prev: function () { self.page -= 1; },
               next: function () { self.page += 1; }, last: function () { self.page = 1e9; }};
    Object.keys(nav).forEach(function (k) {
      var b = document.getElementById(spec.id + "-" + k);
      if (b) b.addEventListener("click", function () { nav[k](); self.render(); });
    });
    this.tbody.addEventListener("click", function (ev) {
      var tr = ev.target.closest ? ev.target.closest("tr.row") : null;
      if (tr && self.expandable) self.toggle(Number(tr.getAttribute("data-row")));
    });
    this.tbody.addEventListener("keydown", function (ev) {
      if (ev.key !== "Enter" && ev.key !== " ") return;
      var tr = ev.target.closest ? ev.target.closest("tr.row") : null;
      if (tr && self.expandable) {
        ev.preventDefault();
        self.toggle(Number(tr.getAttribute("data-row")));
      }
    });
    var controls = document.getElementById(spec.id + "-controls");
    if (controls) controls.hidden = false;
    var pager = document.getElementById(spec.id + "-pager");
    if (pager) pager.hidden = false;
    this.render();
  }

  Table.prototype.reset = function () {
    var spec = this.spec;
    spec.filters.forEach(function (f) {
      var s = document.getElementById(f.id);
      if (s) s.value = "";
    });
    var search = document.getElementById(spec.id + "-search");
    if (search) search.value = "";
    this.filterVals = spec.filters.map(function () { return null; });
    this.query = ""; this.sortCol = -1; this.sortDir = 0;
    Array.prototype.forEach.call(this.table.tHead.rows[0].cells, function (th) {
      if (th.hasAttribute("aria-sort")) th.setAttribute("aria-sort", "none");
    });
    this.apply();
  };

  Table.prototype.sortBy = function (col, th) {
    if (col < 0) return;
    var numeric = this.spec.columns[col].type !== "text";
    if (this.sortCol === col) this.sortDir = -this.sortDir;
    else { this.sortCol = col; this.sortDir = numeric ? -1 : 1; }
    Array.prototype.forEach.call(this.table.tHead.rows[0].cells, function (h) {
      if (h.hasAttribute("aria-sort")) h.setAttribute("aria-sort", "none");
    });
    th.setAttribute("aria-sort", this.sortDir < 0 ? "descending" : "ascending");
    this.apply();
  };

  Table.prototype.apply = function () {
    var rows = this.rows, spec = this.spec, fv = this.filterVals, q = this.query, self = this;
    var active = [];
    spec.filters.forEach(function (f, i) { if (fv[i]) active.push([f.col, fv[i].v]); });
    if (q && !this.haystack) {
      this.haystack = rows.map(function (r) {
        var parts = spec.search.map(function (c) { return r[c] === null ? "" : String(r[c]); });
        return parts.join("\u0001").toLowerCase();
      });
    }
    var view = [];
    for (var i = 0; i < rows.length; i++) {
      var r = rows[i], ok = true;
      for (var j = 0; j < active.length; j++) {
        var v = r[active[j][0]];
        var s = v === null || v === undefined ? null : String(v);
        if (s !== active[j][1]) { ok = false; break; }
      }
      if (ok && q && this.haystack[i].indexOf(q) < 0) ok = false;
      if (ok) view.push(i);
    }
    if (this.sortCol >= 0) {
      var c = this.sortCol, dir = this.sortDir, numeric = spec.columns[c].type !== "text";
      var coll = this.collator;
      view.sort(function (a, b) {
        var x = rows[a][c], y = rows[b][c];
        var xn = x === null || x === undefined, yn = y === null || y === undefined;
        if (xn || yn) return xn && yn ? a - b : (xn ? 1 : -1);  // missing values last either way
        var d = numeric ? (x < y ? -1 : (x > y ? 1 : 0)) : coll.compare(String(x), String(y));
        return d !== 0 ? d * dir : a - b;
      });
    }
    this.view = view;
    this.page = 0;
    self.render();
  };

  Table.prototype.toggle = function (i) {
    if (this.expanded[i]) delete this.expanded[i]; else this.expanded[i] = true;
    this.render();
  };

  Table.prototype.detailRow = function (r) {
    var spec = this.spec, cur = spec.currency;
    var tr = el("tr", "details"), td = el("td");
    tr.setAttribute("data-testid", spec.id + "-details");
    td.colSpan = this.ncols;
    var ul = el("ul", "reasons"), any = false;
    spec.reasons.forEach(function (pair) {
      var text = r[pair[0]];
      if (text === null || text === undefined || text === "") return;
      any = true;
      var li = el("li");
      li.setAttribute("data-testid", "reason");
      if (pair[1] >= 0 && finite(r[pair[1]])) {
        var p = r[pair[1]];
        li.appendChild(el("span", "pts " + (p > 0 ? "up" : "down"), fmtPoints(p)));
      }
      li.appendChild(el("span", "text", String(text)));
      ul.appendChild(li);
    });
    if (any) td.appendChild(ul);
    else if (spec.reasons.length) {
      td.appendChild(el("p", "detail-extra", "No reasons recorded for this account."));
    }
    spec.details.forEach(function (d) {
      var v = r[d[0]];
      if (v !== null && v !== undefined && v !== "") {
        td.appendChild(el("p", "detail-extra", d[1] + ": " + fmt("text", v, cur)));
      }
    });
    tr.appendChild(td);
    return tr;
  };

  Table.prototype.render = function () {
    var spec = this.spec, rows = this.rows, view = this.view;
    var size = spec.pageSize, cur = spec.currency;
    var pages = Math.max(1, Math.ceil(view.length / size));
    if (this.page >= pages) this.page = pages - 1;
    if (this.page < 0) this.page = 0;
    var start = this.page * size, end = Math.min(view.length, start + size);
    var frag = document.createDocumentFragment(), cols = spec.columns, badges = this.badges;
    for (var k = start; k < end; k++) {
      var i = view[k], r = rows[i], tr = el("tr", "row");
      tr.setAttribute("data-row", String(i));
      if (this.expandable) {
        tr.tabIndex = 0;
        tr.setAttribute("aria-expanded", this.expanded[i] ? "true" : "false");
        var ex = el("td", "exp"), sp = el("span", null, "\u25b8");
        sp.setAttribute("aria-hidden", "true");
        ex.appendChild(sp);
        tr.appendChild(ex);
      }
      for (var j = 0; j < cols.length; j++) {
        var v = r[j], td = el("td", cols[j].type === "text" ? "" : "num");
        td.setAttribute("data-key", cols[j].key);
        var text = fmt(cols[j].type, v, cur), b = badges[String(j)];
        if (b && v !== null && b[String(v)]) td.appendChild(el("span", b[String(v)], text));
        else td.textContent = text;
        tr.appendChild(td);
      }
      frag.appendChild(tr);
      if (this.expanded[i]) frag.appendChild(this.detailRow(r));
    }
    this.tbody.textContent = "";
    this.tbody.appendChild(frag);
    var total = rows.length, n = view.length, txt;
    if (n === 0) txt = "no rows match (" + fmtInt(total) + " in total)";
    else {
      txt = "showing " + fmtInt(start + 1) + "\u2013" + fmtInt(end) + " of " + fmtInt(n);
      if (n !== total) txt += " matching (" + fmtInt(total) + " in total)";
    }
    this.count.textContent = txt;
    this.count.setAttribute("data-matching", String(n));
    this.count.setAttribute("data-total", String(total));
    this.count.setAttribute("data-start", String(n ? start + 1 : 0));
    this.count.setAttribute("data-end", String(end));
    if (this.pageLabel) {
      this.pageLabel.textContent = "page " + fmtInt(this.page + 1) + " of " + fmtInt(pages);
    }
    var setDis = function (id, dis) {
      var b = document.getElementById(spec.id + "-" + id);
      if (b) b.disabled = dis;
    };
    setDis("first", this.page === 0); setDis("prev", this.page === 0);
    setDis("next", this.page >= pages - 1); setDis("last", this.page >= pages - 1);
  };

  function init() {
    var blocks = document.querySelectorAll("script.table-data");
    window.churnlabTables = {};
    Array.prototype.forEach.call(blocks, function (block) {
      var spec = JSON.parse(block.textContent);
      window.churnlabTables[spec.id] = new Table(block.parentNode, spec);
    });
    document.documentElement.setAttribute("data-ready", "true");
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
