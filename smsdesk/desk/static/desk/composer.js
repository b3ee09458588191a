// The SMS composer: under each textarea[data-sms-composer], a live count of
// what the reply costs ("47 / 160 · GSM-7 · 1 SMS"), the characters that force
// UCS-2, and a button that swaps them for GSM look-alikes.
//
// The counting is smsdesk/lib/segments.py ported by hand, step for step; the
// tables come from the server in <script id="sms-tables"> (segments.tables()),
// so there is no second copy of them here. Without this script the form
// still submits as it is.
(() => {
  "use strict";

  const source = document.getElementById("sms-tables");
  if (!source) return;
  const tables = JSON.parse(source.textContent);
  const BASIC = new Set(tables.basic);
  const EXTENSION = new Set(tables.extension);
  const LOOKALIKES = new Map(Object.entries(tables.lookalikes));
  const STRIP = new Set(tables.strip);
  const CAPACITY = tables.capacity;
  const NAMES = { gsm7: "GSM-7", ucs2: "UCS-2" };
  const SHOWN = 8; // forcing characters named before "and N more"

  const ZWJ = "\u200d";
  const MARK = /^\p{M}$/u; // combining marks, variation selectors
  const inRange = (code, low, high) => code >= low && code <= high;
  const isRegional = (code) => inRange(code, 0x1f1e6, 0x1f1ff);
  const isGsm = (char) => BASIC.has(char) || EXTENSION.has(char);
  const allGsm = (text) => Array.from(text).every(isGsm);

  // segments.joins: does `char` belong to the piece before it?
  function joins(piece, char) {
    const code = char.codePointAt(0);
    if (piece.endsWith(ZWJ) || char === ZWJ) return true;
    if (inRange(code, 0x1f3fb, 0x1f3ff) || inRange(code, 0xe0020, 0xe007f)) return true; // skin tones, flag tags
    if (MARK.test(char)) return true;
    const chars = Array.from(piece);
    return isRegional(code) && chars.length === 1 && isRegional(chars[0].codePointAt(0));
  }

  // segments.split_pieces: what a part boundary never cuts. for…of walks code
  // points, so a surrogate pair is never split.
  function splitPieces(text) {
    const pieces = [];
    for (const char of text) {
      if (pieces.length && joins(pieces[pieces.length - 1], char)) pieces[pieces.length - 1] += char;
      else pieces.push(char);
    }
    return pieces;
  }

  // segments.utf16_sizes: a JavaScript string's length is its UTF-16 units.
  function utf16Sizes(piece) {
    if (piece.length <= CAPACITY.ucs2.part) return [piece.length];
    return Array.from(piece, (char) => char.length);
  }

  // segments.pack: fill parts in order, each piece whole.
  function pack(costs, perPart) {
    let parts = 1, used = 0;
    for (const cost of costs) {
      if (used + cost > perPart) { parts += 1; used = 0; }
      used += cost;
    }
    return [parts, used];
  }

  // segments.measure
  function measure(text) {
    let encoding, costs, forcing = [];
    if (allGsm(text)) {
      encoding = "gsm7";
      costs = Array.from(text, (char) => (EXTENSION.has(char) ? 2 : 1));
    } else {
      encoding = "ucs2";
      const pieces = splitPieces(text);
      forcing = [...new Set(pieces.filter((piece) => !allGsm(piece)))];
      costs = pieces.flatMap(utf16Sizes);
    }
    const units = costs.reduce((sum, cost) => sum + cost, 0);
    const { alone, part } = CAPACITY[encoding];
    if (units <= alone) {
      return { encoding, segments: units ? 1 : 0, units, perSegment: alone, remaining: alone - units, forcing };
    }
    const [segments, used] = pack(costs, part);
    return { encoding, segments, units, perSegment: part, remaining: part - used, forcing };
  }

  const replaceLookalikes = (text) => Array.from(text, (char) => LOOKALIKES.get(char) ?? char).join("");

  // Django's CharField strips with Python's str.strip: count what it will keep.
  function strip(text) {
    const chars = Array.from(text);
    let start = 0, end = chars.length;
    while (start < end && STRIP.has(chars[start])) start += 1;
    while (end > start && STRIP.has(chars[end - 1])) end -= 1;
    return chars.slice(start, end).join("");
  }

  function summary(m) {
    const name = NAMES[m.encoding];
    if (m.segments > 1) return `${name} · ${m.segments} SMS · ${m.remaining} left`;
    return `${m.units} / ${m.perSegment} · ${name} · ${m.segments} SMS`;
  }

  const codePoint = (char) => "U+" + char.codePointAt(0).toString(16).toUpperCase().padStart(4, "0");
  const codePoints = (piece) => Array.from(piece, codePoint).join(" ");

  // "’ — … force UCS-2 (70 per SMS)", each character in a chip; invisible
  // ones (spaces, joiners, controls) shown by code point.
  function forcingNote(m) {
    const nodes = [];
    for (const piece of m.forcing.slice(0, SHOWN)) {
      const chip = document.createElement("span");
      chip.className = "sms-char";
      chip.textContent = /^[\s\p{C}\p{M}]+$/u.test(piece) ? codePoints(piece) : piece;
      chip.title = codePoints(piece);
      nodes.push(chip, " ");
    }
    const more = m.forcing.length > SHOWN ? `and ${m.forcing.length - SHOWN} more ` : "";
    const verb = m.forcing.length === 1 ? "forces" : "force";
    nodes.push(`${more}${verb} UCS-2 (${m.perSegment} per SMS)`);
    return nodes;
  }

  function attach(textarea, index) {
    const meter = document.createElement("div");
    meter.className = "sms-meter";
    const status = document.createElement("p");
    status.className = "sms-status";
    status.id = `${textarea.id || "sms-composer-" + index}-sms`;
    status.setAttribute("aria-live", "polite");
    const count = document.createElement("span");
    count.className = "sms-count";
    const note = document.createElement("span");
    note.className = "sms-forcing";
    status.append(count, note);
    const fix = document.createElement("button");
    fix.type = "button";
    fix.className = "secondary sms-fix";
    fix.textContent = "Replace with GSM look-alikes";
    meter.append(status, fix);
    textarea.after(meter);
    const described = textarea.getAttribute("aria-describedby");
    textarea.setAttribute("aria-describedby", described ? `${described} ${status.id}` : status.id);

    function update() {
      const m = measure(strip(textarea.value));
      count.textContent = summary(m);
      note.replaceChildren(...(m.forcing.length ? forcingNote(m) : []));
      note.hidden = !m.forcing.length;
      fix.hidden = replaceLookalikes(textarea.value) === textarea.value;
      // The figures, for anything that wants them without parsing the text.
      Object.assign(status.dataset, {
        encoding: m.encoding, segments: m.segments, units: m.units, remaining: m.remaining,
        forcing: JSON.stringify(m.forcing),
      });
      meter.classList.toggle("sms-ucs2", m.encoding === "ucs2");
    }

    fix.addEventListener("click", () => {
      textarea.value = replaceLookalikes(textarea.value);
      textarea.dispatchEvent(new Event("input", { bubbles: true }));
      // The button hides itself now: keep keyboard focus in the reply.
      textarea.focus();
    });
    textarea.addEventListener("input", update);
    update();
  }

  document.querySelectorAll("textarea[data-sms-composer]").forEach(attach);
})();
