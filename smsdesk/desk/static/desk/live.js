// smsdesk live updates: one Server-Sent Events connection per page
// (/admin/live); when something on the page changed, the parts of it marked
// data-live-fragment="NAME" are fetched again (the page's own URL with
// ?fragment=NAME answers just that element) and swapped in place. Focus,
// scroll and anything being typed are kept; the reply box lives outside the
// fragments and is never touched. Without this script every page still works:
// it is only not live.
(function () {
  "use strict";

  var main = document.getElementById("main");
  if (!main || !window.EventSource || !window.fetch) return;
  var ticket = main.getAttribute("data-ticket"); // set on a ticket page
  var streamUrl = main.getAttribute("data-live-url") || "/admin/live";
  if (!fragmentNames().length) return; // nothing here can change live

  // ms between refreshes, at least: a small team sees each change at once;
  // a busy server stretches the gap (3 × its last answer, below).
  var MIN_GAP = 100;
  var lastId = main.getAttribute("data-live-after"); // the newest event when the page was made
  var source = null;
  var retryDelay = 5000;

  function fragmentNames() {
    var names = [];
    document.querySelectorAll("[data-live-fragment]").forEach(function (el) {
      var name = el.getAttribute("data-live-fragment");
      if (names.indexOf(name) === -1) names.push(name);
    });
    return names;
  }

  function fragment(name) {
    return document.querySelector('[data-live-fragment="' + name + '"]');
  }

  // The connection. EventSource reconnects by itself after a network error
  // or when the server ends the stream, sending Last-Event-ID; it gives up
  // only when the server answers with an error (signed out, say), and then
  // this tries again now and then.

  function connect() {
    var url = new URL(streamUrl, location.href);
    if (ticket) url.searchParams.set("ticket", ticket);
    if (lastId) url.searchParams.set("last_event_id", lastId);
    source = new EventSource(url.href);
    main.setAttribute("data-live", "connecting");
    source.addEventListener("open", function () {
      main.setAttribute("data-live", "open");
      retryDelay = 5000;
    });
    source.addEventListener("change", onChange);
    source.addEventListener("reset", function (event) {
      remember(event);
      want(fragmentNames());
    });
    source.addEventListener("message", remember);
    source.addEventListener("error", function () {
      if (source.readyState !== EventSource.CLOSED) {
        main.setAttribute("data-live", "connecting");
        return;
      }
      main.setAttribute("data-live", "closed");
      setTimeout(connect, retryDelay + Math.random() * retryDelay);
      retryDelay = Math.min(retryDelay * 2, 60000);
    });
  }

  function remember(event) {
    if (event.lastEventId) lastId = event.lastEventId;
  }

  function onChange(event) {
    remember(event);
    var data;
    try {
      data = JSON.parse(event.data);
    } catch (error) {
      return;
    }
    var names = fragmentNames();
    if (ticket) {
      if (!data.tickets || data.tickets.indexOf(ticket) === -1) return;
      if (data.kind === "read") return; // someone opened it: nothing on the page changed
      if (data.kind === "presence") names = names.filter(function (n) { return n === "viewers"; });
      if (data.kind === "delivery") names = names.filter(function (n) { return n === "thread"; });
    } else if (data.kind === "presence") {
      return;
    }
    want(names);
  }

  // Refreshing: the first change is fetched at once; changes that come while
  // a fetch runs, or soon after, wait and go together in the next one. The
  // gap between fetches grows with how long they take, so a busy server is
  // asked less often.

  var pending = {};
  var running = false;
  var timer = null;
  var lastStart = 0;
  var gap = MIN_GAP;

  function want(names) {
    names.forEach(function (name) { pending[name] = true; });
    schedule();
  }

  function schedule() {
    if (running || timer || document.hidden || !Object.keys(pending).length) return;
    timer = setTimeout(refresh, Math.max(0, lastStart + gap - Date.now()));
  }

  function refresh() {
    timer = null;
    var names = Object.keys(pending);
    pending = {};
    running = true;
    lastStart = Date.now();
    Promise.all(names.map(load)).then(function () {
      running = false;
      gap = Math.max(MIN_GAP, 3 * (Date.now() - lastStart));
      schedule();
    });
  }

  function load(name) {
    var url = new URL(location.href);
    url.hash = "";
    url.searchParams.set("fragment", name);
    return fetch(url.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        // A redirect means the session ended (the sign-in page): leave the page be.
        return response.ok && !response.redirected ? response.text() : null;
      })
      .then(function (html) {
        if (html !== null) swap(name, html);
      })
      .catch(function () {}); // offline for a moment: the next change tries again
  }

  function swap(name, html) {
    var old = fragment(name);
    if (!old) return;
    var template = document.createElement("template");
    template.innerHTML = html.trim();
    var fresh = template.content.firstElementChild;
    if (!fresh || fresh.getAttribute("data-live-fragment") !== name) return;
    var active = document.activeElement;
    if (active && old.contains(active) && editing(active)) {
      // Never under someone's fingers: swap once they leave the field.
      active.addEventListener("blur", function () { want([name]); }, { once: true });
      return;
    }
    var focus = active && old.contains(active) ? describe(active) : null;
    var scroll = scrolled(old);
    old.replaceWith(fresh);
    if (scroll) fresh.scrollTop = scroll.atEnd ? fresh.scrollHeight : scroll.top;
    if (focus) refocus(fresh, focus);
    document.dispatchEvent(new CustomEvent("live:fragment", { detail: { name: name } }));
  }

  function editing(el) {
    var tag = el.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || el.isContentEditable;
  }

  function scrolled(el) {
    if (el.scrollHeight <= el.clientHeight) return null;
    return { top: el.scrollTop, atEnd: el.scrollHeight - el.scrollTop - el.clientHeight < 8 };
  }

  // The focused element is found again in the new fragment by its id, link or name.
  function describe(el) {
    var tag = el.tagName.toLowerCase();
    var selector = null;
    if (el.id) selector = "#" + CSS.escape(el.id);
    else if (el.getAttribute("href")) selector = tag + '[href="' + CSS.escape(el.getAttribute("href")) + '"]';
    else if (el.getAttribute("name")) selector = tag + '[name="' + CSS.escape(el.getAttribute("name")) + '"]';
    return selector && { selector: selector, current: el.classList.contains("current") };
  }

  function refocus(root, focus) {
    var el = root.querySelector(focus.selector);
    if (!el) return;
    if (focus.current) el.classList.add("current");
    el.focus({ preventScroll: true });
  }

  document.addEventListener("visibilitychange", schedule);
  window.addEventListener("pageshow", function (event) {
    // Back from the back/forward cache: the page is as old as when it was left.
    if (!event.persisted) return;
    want(fragmentNames());
    if (!source || source.readyState === EventSource.CLOSED) connect();
  });

  connect();
})();
