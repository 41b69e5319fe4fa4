// Strata console: progressive enhancement only. Every page works without this script; with it, the
// overview draws live throughput charts and parts marked data-refresh reload themselves in place.
"use strict";

const COLORS = ["#2f5bd3", "#e8590c", "#12b886", "#ae3ec9", "#f59f00", "#1098ad"];
const SVG = "http://www.w3.org/2000/svg";

function human(value) {
  const units = ["", "k", "M", "G", "T"];
  let i = 0;
  while (Math.abs(value) >= 1000 && i < units.length - 1) { value /= 1000; i++; }
  return (value >= 100 || i === 0 ? Math.round(value) : value.toFixed(1)) + units[i];
}

function node(name, attrs, text) {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;  // textContent: topic names are never parsed as markup
  return el;
}

function draw(svg, field, data) {
  const width = svg.clientWidth || 300, height = svg.clientHeight || 140;
  const left = 42, bottom = 16, top = 8;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const series = data.series.map((s) => s[field] || []);
  const points = Math.max(2, ...series.map((s) => s.length));
  const max = Math.max(1, ...series.flat());
  const x = (i) => left + (i * (width - left - 6)) / (points - 1);
  const y = (v) => top + (height - top - bottom) * (1 - v / max);
  for (const f of [0, 0.5, 1]) {
    svg.appendChild(node("line", { x1: left, x2: width - 6, y1: y(max * f), y2: y(max * f), class: "grid" }));
    svg.appendChild(node("text", { x: 4, y: y(max * f) + 3 }, human(max * f)));
  }
  svg.appendChild(node("text", { x: left, y: height - 3 }, `${points} s ago`));
  svg.appendChild(node("text", { x: width - 30, y: height - 3 }, "now"));
  series.forEach((values, n) => {
    if (values.length === 0) return;
    const offset = points - values.length;
    const d = values.map((v, i) => `${i === 0 ? "M" : "L"}${x(i + offset).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    svg.appendChild(node("path", { d, fill: "none", stroke: COLORS[n % COLORS.length], "stroke-width": n === 0 ? 2 : 1.5 }));
  });
}

async function refreshCharts(box) {
  try {
    const response = await fetch(box.dataset.source, { credentials: "same-origin" });
    if (!response.ok) return;
    const data = await response.json();
    for (const svg of box.querySelectorAll("svg.chart")) draw(svg, svg.dataset.field, data);
    const legend = document.getElementById("legend");
    if (legend) {
      legend.replaceChildren(...data.series.map((s, n) => {
        const item = document.createElement("span");
        const swatch = document.createElement("i");
        swatch.style.background = COLORS[n % COLORS.length];
        item.append(swatch, document.createTextNode(s.name));
        return item;
      }));
    }
  } catch (e) { /* the next refresh tries again */ }
}

async function refreshPart(el) {
  try {
    const response = await fetch(el.dataset.refresh, { credentials: "same-origin" });
    // The server escapes everything it renders; the fragment is the same HTML the page was built with.
    if (response.ok) el.innerHTML = await response.text();
  } catch (e) { /* keep what is shown */ }
}

document.addEventListener("DOMContentLoaded", () => {
  const charts = document.getElementById("charts");
  if (charts) {
    refreshCharts(charts);
    setInterval(() => refreshCharts(charts), 2000);
  }
  for (const el of document.querySelectorAll("[data-refresh]")) {
    setInterval(() => refreshPart(el), Number(el.dataset.every) || 5000);
  }
  // Forms asking for confirmation: the delete page needs the typed name; this only adds a last check.
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (e) => { if (!confirm(form.dataset.confirm)) e.preventDefault(); });
  }
});
