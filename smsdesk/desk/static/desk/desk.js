// smsdesk: keyboard shortcuts, "5 min ago" timestamps that stay current, and
// a warning when another agent replies while this one is writing. Every action
// still works without this script; it only saves keystrokes and surprises.
(function () {
  "use strict";

  var main = document.getElementById("main");
  if (!main) return;
  var page = main.getAttribute("data-page");

  // Keyboard: j/k move through the ticket list, Enter opens (the row is a
  // link), / searches, r focuses the reply, e closes the open ticket.
  function typing(target) {
    var tag = target && target.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || (target && target.isContentEditable);
  }

  function rows() {
    return Array.prototype.slice.call(document.querySelectorAll("a[data-row]"));
  }

  function move(step) {
    var list = rows();
    if (!list.length) return;
    var at = list.indexOf(document.activeElement);
    var next = at === -1 ? (step > 0 ? 0 : list.length - 1) : Math.min(list.length - 1, Math.max(0, at + step));
    list.forEach(function (row) { row.classList.remove("current"); });
    list[next].classList.add("current");
    list[next].focus();
    list[next].scrollIntoView({ block: "nearest" });
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (typing(event.target)) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    var handled = true;
    if (event.key === "j") move(1);
    else if (event.key === "k") move(-1);
    else if (event.key === "/") {
      var search = document.getElementById("q");
      if (search) { search.focus(); search.select(); } else handled = false;
    } else if (event.key === "r" && page === "ticket") {
      var reply = document.querySelector("#reply textarea");
      if (reply) reply.focus(); else handled = false;
    } else if (event.key === "e" && page === "ticket") {
      var close = document.querySelector("[data-close-form] button[aria-keyshortcuts='e']");
      if (close) close.click(); else handled = false;
    } else handled = false;
    if (handled) event.preventDefault();
  });

  // Relative times: the server writes "5 min ago" for the last day and marks
  // those <time data-ago>; the same rules (desk_time.relative) keep them true.
  function relative(seconds) {
    if (seconds < 60) return "just now";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min ago";
    return Math.floor(seconds / 3600) + " h ago";
  }

  function refreshTimes() {
    var now = Date.now();
    document.querySelectorAll("time[data-ago]").forEach(function (time) {
      var seconds = (now - Date.parse(time.getAttribute("datetime"))) / 1000;
      if (seconds >= -60 && seconds < 86400) time.textContent = relative(Math.max(0, seconds));
    });
  }
  setInterval(refreshTimes, 30000);

  // Collision: when the live thread shows a reply by another agent after the
  // one this page started with, say so next to the Send button at once. The
  // server checks again when the reply is sent.
  var form = document.getElementById("reply");
  if (page !== "ticket" || !form) return;
  var me = main.getAttribute("data-me");
  var seenField = form.querySelector("input[name=seen]");
  var seen = seenField ? parseInt(seenField.value || "0", 10) : 0;
  var warning = form.querySelector("[data-collision-live]");

  function checkCollision() {
    var names = [];
    document.querySelectorAll(".thread .msg.out[data-author]").forEach(function (message) {
      var author = message.getAttribute("data-author");
      if (parseInt(message.getAttribute("data-id"), 10) > seen && author !== me && names.indexOf(author) === -1) {
        names.push(author);
      }
    });
    if (!warning) return;
    var text = names.length
      ? names.join(" and ") + " replied while you were here. Read their reply before sending yours."
      : "";
    warning.hidden = !text;
    // Only on change: this observer watches the page, and so sees its own edits.
    if (warning.textContent !== text) warning.textContent = text;
  }

  new MutationObserver(checkCollision).observe(main, { childList: true, subtree: true });
})();
