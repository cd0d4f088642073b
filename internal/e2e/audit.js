// Page audit run in Chromium by pages_test.go: returns a list of problems
// (strings) for the current document. It checks what a real browser can
// judge and an HTML linter cannot: rendered contrast, overflow at the
// current viewport, accessible names, landmarks.
(() => {
  const problems = [];
  const where = (el) => {
    let s = el.tagName.toLowerCase();
    if (el.id) s += "#" + el.id;
    if (el.classList.length) s += "." + [...el.classList].join(".");
    const text = (el.textContent || "").trim().replace(/\s+/g, " ").slice(0, 40);
    return text ? `${s} "${text}"` : s;
  };
  const visible = (el) => {
    const r = el.getBoundingClientRect();
    const cs = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && cs.visibility !== "hidden" && cs.display !== "none";
  };

  // Document basics and landmarks.
  if (!document.documentElement.lang) problems.push("html has no lang");
  if (!document.title.trim()) problems.push("no title");
  if (document.querySelectorAll("main").length !== 1) problems.push("want exactly one <main>");
  if (!document.querySelector("header nav[aria-label]")) problems.push("no labelled <nav> in a <header>");
  if (!document.querySelector("footer")) problems.push("no <footer>");
  const h1s = document.querySelectorAll("h1");
  if (h1s.length !== 1) problems.push(`want exactly one h1, have ${h1s.length}`);
  let level = 1;
  for (const h of document.querySelectorAll("main h1, main h2, main h3, main h4")) {
    const l = Number(h.tagName[1]);
    if (l > level + 1) problems.push(`heading level skips from h${level} to h${l}: ${where(h)}`);
    level = l;
  }
  if (!document.querySelector('a[href="#main"]') || !document.getElementById("main")) problems.push("no skip link to #main");

  // No inline script or style: the CSP forbids them, and they would be
  // blocked silently in production.
  for (const s of document.querySelectorAll("script")) {
    if (!s.src) problems.push("inline <script>");
  }
  if (document.querySelector("style")) problems.push("<style> element");
  for (const el of document.querySelectorAll("*")) {
    if (el.hasAttribute("style")) problems.push("style attribute on " + where(el));
    for (const a of el.attributes) {
      if (a.name.startsWith("on")) problems.push(`${a.name} attribute on ${where(el)}`);
    }
  }

  // Names: controls, links, images.
  for (const el of document.querySelectorAll("input:not([type=hidden]), select, textarea")) {
    const labelled = (el.labels && el.labels.length) || el.getAttribute("aria-label") || el.getAttribute("aria-labelledby");
    if (!labelled) problems.push("unlabelled control " + where(el));
  }
  for (const el of document.querySelectorAll("a[href], button, summary")) {
    const name = (el.getAttribute("aria-label") || el.textContent || "").trim();
    if (!name) problems.push("control without a name: " + el.outerHTML.slice(0, 80));
  }
  for (const img of document.querySelectorAll("img")) {
    if (!img.hasAttribute("alt")) problems.push("img without alt: " + img.src);
  }
  const ids = {};
  for (const el of document.querySelectorAll("[id]")) {
    if (ids[el.id]) problems.push("duplicate id " + el.id);
    ids[el.id] = true;
  }

  // Layout: nothing may push the page sideways (the 390 px check).
  const vw = document.documentElement.clientWidth;
  if (document.documentElement.scrollWidth > vw + 1) {
    problems.push(`page is ${document.documentElement.scrollWidth}px wide in a ${vw}px viewport`);
    for (const el of document.querySelectorAll("main *, header *")) {
      const r = el.getBoundingClientRect();
      if (r.right > vw + 1 && visible(el)) { problems.push("sticks out: " + where(el)); break; }
    }
  }
  // Content must stay inside its box (a long e-mail address or claim name
  // poking out of a card), except in boxes made to scroll.
  for (const el of document.querySelectorAll("main *")) {
    if (!visible(el)) continue;
    const cs = getComputedStyle(el);
    if (cs.overflowX !== "visible" || cs.display === "inline") continue;
    if (el.scrollWidth > el.clientWidth + 1) problems.push(`content overflows ${el.clientWidth}px box: ${where(el)}`);
  }
  // Touch targets: at least 24x24 CSS px (WCAG 2.2 target size, minimum).
  for (const el of document.querySelectorAll("a[href], button, summary")) {
    if (!visible(el) || el.closest("p, li, td, dd") && el.tagName === "A" && !el.classList.contains("button")) continue;
    const r = el.getBoundingClientRect();
    if (r.height < 24 || r.width < 24) problems.push(`small target ${Math.round(r.width)}x${Math.round(r.height)}: ${where(el)}`);
  }

  // Contrast (WCAG AA): each visible text node against the background that
  // is really painted behind it (alpha composited up the tree).
  const parse = (c) => {
    const m = c.match(/rgba?\(([^)]+)\)/);
    if (!m) return null;
    const p = m[1].split(/[ ,/]+/).filter(Boolean).map(Number);
    return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
  };
  const over = (top, bottom) => ({
    r: top.r * top.a + bottom.r * (1 - top.a),
    g: top.g * top.a + bottom.g * (1 - top.a),
    b: top.b * top.a + bottom.b * (1 - top.a),
    a: 1,
  });
  const background = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const cs = getComputedStyle(e);
      if (cs.backgroundImage && cs.backgroundImage !== "none") return null; // cannot judge
      const c = parse(cs.backgroundColor);
      if (c && c.a > 0) {
        layers.push(c);
        if (c.a >= 1) break;
      }
    }
    let bg = { r: 255, g: 255, b: 255, a: 1 };
    for (let i = layers.length - 1; i >= 0; i--) bg = over(layers[i], bg);
    return bg;
  };
  const lum = (c) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b);
  };
  const ratio = (a, b) => { const x = lum(a), y = lum(b); return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05); };
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const seen = new Set();
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!n.textContent.trim() || !el || seen.has(el) || !visible(el)) continue;
    if (el.closest(".skip, .sr-only, [hidden]")) continue;
    seen.add(el);
    const cs = getComputedStyle(el);
    const bg = background(el);
    const fgc = parse(cs.color);
    if (!bg || !fgc) continue;
    const fg = over(fgc, bg);
    const size = parseFloat(cs.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(cs.fontWeight) >= 700);
    const need = large ? 3 : 4.5;
    const r = ratio(fg, bg);
    if (r < need) problems.push(`contrast ${r.toFixed(2)} < ${need}: ${where(el)} (${cs.color} on rgb(${Math.round(bg.r)}, ${Math.round(bg.g)}, ${Math.round(bg.b)}))`);
  }
  return problems;
})()
