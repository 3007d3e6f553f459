/* Caducée webmail: progressive enhancement only (every page works without it).
   (the mailbox switcher has its own "Ouvrir" button: choosing is not navigating, WCAG 3.2.2)
   - recipient autocomplete from the health directory (ARIA combobox, keyboard);
   - photos are downscaled in the browser before upload, the size limit is checked. */
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  function onReady(fn) {
    if (document.readyState !== "loading") fn(); else document.addEventListener("DOMContentLoaded", fn);
  }

  onReady(function () {
    document.querySelectorAll("input[data-autocomplete]").forEach(setupAutocomplete);
    var form = document.getElementById("form-ecrire");
    if (form) setupFiles(form);
  });

  /* ---------- autocomplete ---------- */
  function setupAutocomplete(input) {
    var list = document.getElementById(input.getAttribute("aria-controls"));
    var timer = null, items = [], active = -1, seq = 0;

    function lastToken() {
      var parts = input.value.split(/[,;]/);
      return parts[parts.length - 1].trim();
    }
    function close() {
      list.hidden = true; input.setAttribute("aria-expanded", "false");
      input.removeAttribute("aria-activedescendant"); active = -1;
    }
    function choose(i) {
      var r = items[i]; if (!r) return;
      var parts = input.value.split(/[,;]/); parts.pop();
      parts = parts.map(function (p) { return p.trim(); }).filter(Boolean);
      parts.push(r.address);
      input.value = parts.join(", ") + ", ";
      close(); input.focus();
    }
    function highlight(i) {
      var lis = list.querySelectorAll("li");
      lis.forEach(function (li, j) { li.setAttribute("aria-selected", j === i ? "true" : "false"); });
      active = i;
      if (lis[i]) { input.setAttribute("aria-activedescendant", lis[i].id); lis[i].scrollIntoView({ block: "nearest" }); }
    }
    function render(results) {
      items = results; list.textContent = "";
      if (!results.length) { close(); return; }
      results.forEach(function (r, i) {
        var li = document.createElement("li");
        li.id = list.id + "-" + i; li.setAttribute("role", "option"); li.setAttribute("aria-selected", "false");
        var strong = document.createElement("strong"); strong.textContent = r.label;
        var small = document.createElement("small"); small.textContent = r.address + (r.detail ? " — " + r.detail : "");
        li.appendChild(strong); li.appendChild(small);
        li.addEventListener("mousedown", function (e) { e.preventDefault(); choose(i); });
        list.appendChild(li);
      });
      list.hidden = false; input.setAttribute("aria-expanded", "true"); active = -1;
    }
    input.addEventListener("input", function () {
      clearTimeout(timer);
      var q = lastToken();
      if (q.length < 2 || q.indexOf("@") >= 0) { close(); return; }
      timer = setTimeout(function () {
        var mine = ++seq;
        fetch("/annuaire/suggestions?q=" + encodeURIComponent(q), { credentials: "same-origin" })
          .then(function (r) { return r.ok ? r.json() : { results: [] }; })
          .then(function (data) { if (mine === seq) render(data.results || []); })
          .catch(close);
      }, 150);
    });
    input.addEventListener("keydown", function (e) {
      if (list.hidden) return;
      if (e.key === "ArrowDown") { e.preventDefault(); highlight(Math.min(active + 1, items.length - 1)); }
      else if (e.key === "ArrowUp") { e.preventDefault(); highlight(Math.max(active - 1, 0)); }
      else if (e.key === "Enter" && active >= 0) { e.preventDefault(); choose(active); }
      else if (e.key === "Escape") { close(); }
    });
    input.addEventListener("blur", function () { setTimeout(close, 100); });
  }

  /* ---------- attachments: downscale photos, show sizes and the limit ---------- */
  var MAX_SIDE = 2048, QUALITY = 0.85, BIG = 1.5 * 1024 * 1024;

  function human(n) {
    if (n < 1024) return n + " o";
    if (n < 1048576) return Math.round(n / 1024) + " Kio";
    return (n / 1048576).toFixed(1) + " Mio";
  }

  function downscale(file) {
    if (!/^image\/(jpeg|png|webp)$/.test(file.type) || !window.createImageBitmap) return Promise.resolve(file);
    return createImageBitmap(file).then(function (bmp) {
      var side = Math.max(bmp.width, bmp.height);
      if (side <= MAX_SIDE && file.size <= BIG) return file;
      var scale = Math.min(1, MAX_SIDE / side);
      var canvas = document.createElement("canvas");
      canvas.width = Math.round(bmp.width * scale); canvas.height = Math.round(bmp.height * scale);
      canvas.getContext("2d").drawImage(bmp, 0, 0, canvas.width, canvas.height);
      return new Promise(function (resolve) {
        canvas.toBlob(function (blob) {
          if (!blob || blob.size >= file.size) { resolve(file); return; }
          var name = file.name.replace(/\.[^.]*$/, "") + ".jpg";
          resolve(new File([blob], name, { type: "image/jpeg", lastModified: Date.now() }));
        }, "image/jpeg", QUALITY);
      });
    }).catch(function () { return file; });
  }

  function setupFiles(form) {
    var max = parseInt(form.getAttribute("data-max"), 10) || 0;
    var inputs = form.querySelectorAll("input[type=file]");
    var out = document.getElementById("choisis");
    var send = document.getElementById("envoyer");
    var pending = 0;

    function refresh() {
      var total = 0; out.textContent = "";
      inputs.forEach(function (inp) {
        Array.prototype.forEach.call(inp.files, function (f) {
          total += f.size;
          var li = document.createElement("li"); li.textContent = f.name + " — " + human(f.size);
          out.appendChild(li);
        });
      });
      if (max && total > max) {
        var li = document.createElement("li"); li.className = "warn";
        li.textContent = "Trop volumineux : " + human(total) + " pour " + human(max) + " au plus.";
        out.appendChild(li);
      }
      send.disabled = pending > 0 || (max && total > max);
    }

    inputs.forEach(function (inp) {
      inp.addEventListener("change", function () {
        if (!inp.hasAttribute("data-downscale") || !window.DataTransfer) { refresh(); return; }
        pending++; refresh();
        Promise.all(Array.prototype.map.call(inp.files, downscale)).then(function (files) {
          var dt = new DataTransfer();
          files.forEach(function (f) { dt.items.add(f); });
          inp.files = dt.files;
          pending--; refresh();
          inp.setAttribute("data-ready", "1");
        });
      });
    });
  }
})();
