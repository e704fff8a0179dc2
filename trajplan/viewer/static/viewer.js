// trajplan viewer page: NiiVue views of the CT and labels, the needle table, edits re-scored by the server.
// World coordinates in the table and the API are LPS mm; NiiVue works in RAS mm (x and y negated).
"use strict";

const WINDOWS = { bone: [-600, 1400], soft: [-160, 240] };        // W 2000 / L 400, W 400 / L 40
const VERDICT_RGB = { safe: [51, 191, 77], marginal: [255, 179, 0], unsafe: [230, 26, 26] };
const SHOWN_STRUCTURES = 4;
const GRAB_MM = 5;                                  // a press this close (in the view's plane) to an end grabs it
const IN_PLANE = { 0: [0, 1], 1: [0, 2], 2: [1, 2] };  // LPS axes shown by the axial, coronal, sagittal views

const state = { needles: [], selected: null, undo: [], margins: {}, cursor: null, pending: 0,
                pointerDown: false, drag: null, ctImage: null, labelImage: null, labelNames: {},
                labelTable: [], hiddenLabels: new Set(), showSurfaces: true,
                volume3D: false, placing: null, placeView: null };
let nv = null;

// Milliseconds from the start of the page's navigation to each step of its start-up, kept in
// body[data-timings] (benchmarks/viewer.py prints them).
const timings = {};

function mark(step) {
  timings[step] = Math.round(performance.now());
  document.body.dataset.timings = JSON.stringify(timings);
}

// ------------------------------------------------------------------ helpers
async function api(path, body) {
  const response = await fetch(path, {
    method: body === undefined ? "GET" : "POST",
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

const ras = (lps) => [-lps[0], -lps[1], lps[2]];
const fmt = (v, digits = 1) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));
const copy = (value) => JSON.parse(JSON.stringify(value));

function setStatus(text, isError = false) {
  const el = document.getElementById("status");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

// ------------------------------------------------------------------ images
function labelColormap(table, hidden = new Set()) {
  const cm = { R: [0], G: [0], B: [0], A: [0], I: [0], labels: ["background"] };
  for (const label of table) {
    cm.R.push(label.color[0]); cm.G.push(label.color[1]); cm.B.push(label.color[2]);
    cm.A.push(hidden.has(label.value) ? 0 : 255); cm.I.push(label.value); cm.labels.push(label.name);
  }
  return cm;
}

// The overlay: its opacity (the slider; 0 while the labels box is unticked) and the structures hidden.
function overlayOpacity() {
  return document.getElementById("show-labels").checked ? Number(document.getElementById("label-opacity").value) : 0;
}

function updateOverlay() {
  if (state.labelImage) {                 // else applied when the labels arrive
    state.labelImage.setColormapLabel(labelColormap(state.labelTable, state.hiddenLabels));
    state.labelImage.opacity = overlayOpacity();
    refreshOverlay();
  }
  showOblique();
}

// One volume made again on the GPU, not both as NiiVue's updateGLVolume would: the label overlay
// (resampled onto the CT's grid in its colours and opacity) or the CT (in its window). refreshLayers
// is NiiVue 0.69's internal refresh of one volume. Without a CT the labels are the background, and
// before the labels arrive the CT is alone: refreshed as NiiVue does.
function refreshOverlay() {
  if (!state.ctImage) { nv.updateGLVolume(); return; }
  nv.refreshLayers(state.labelImage, 1);
  nv.drawScene();
}

function refreshCt() {
  if (!state.labelImage) { nv.updateGLVolume(); return; }
  nv.refreshLayers(state.ctImage, 0);
  nv.drawScene();
}

function renderLegend(present) {
  const legend = document.getElementById("legend");
  legend.replaceChildren(el("span", { class: "legend-title", text: "structures" }));
  for (const label of state.labelTable.filter((l) => present.includes(l.value))) {
    const box = el("input", { type: "checkbox", "data-label": label.name });
    box.checked = true;
    box.addEventListener("change", () => {
      if (box.checked) state.hiddenLabels.delete(label.value); else state.hiddenLabels.add(label.value);
      updateOverlay();
    });
    const swatch = el("span", { class: "swatch", style: `background: rgb(${label.color.join(",")})` });
    legend.append(el("label", { class: "legend-entry" }, [box, swatch, label.name]));
  }
}

// NiiVue refreshes every volume's GPU textures (each overlay resampled onto the CT's grid) whenever a
// volume or a mesh is added (its updateGLVolume): held back while several are added (see the callers).
function withoutRefresh(action) {
  nv.updateGLVolume = () => {};
  try {
    action();
  } finally {
    delete nv.updateGLVolume;       // NiiVue's own method again
  }
}

// Each refresh of the volumes also makes the CT's gradients (a blur and a Sobel pass over the whole
// volume, NiiVue 0.69's internal gradient shaders) for the lighting of its volume rendering: most of
// the refresh's time in software WebGL, and unused unless "3D: CT" is ticked. Their draw calls are
// skipped until then; ticking the box refreshes the volumes with them.
function skipGradientsUnlessRendered() {
  const gl = nv.gl;
  const gradientPrograms = new Set([nv.blurShader, nv.gradientPrePassShader, nv.sobelFirstOrderShader,
                                    nv.sobelSecondOrderShader].map((shader) => shader.program));
  const useProgram = gl.useProgram.bind(gl), drawArrays = gl.drawArrays.bind(gl);
  let current = null;
  gl.useProgram = (program) => { current = program; useProgram(program); };
  gl.drawArrays = (...args) => (state.volume3D || !gradientPrograms.has(current) ? drawArrays(...args) : undefined);
}

// NiiVue on the page's canvas, the needle meshes made (before any volume: each mesh added refreshes them).
async function startNiivue() {
  nv = new niivue.Niivue({
    backColor: [0, 0, 0, 1], show3Dcrosshair: true, isColorbar: false, dragAndDropEnabled: false,
    crosshairColor: [0.3, 0.7, 1, 0.8], isOrientCube: false, loadingText: "loading CT",
    showAllOrientationMarkers: true, isOrientationTextVisible: true,
    multiplanarShowRender: niivue.SHOW_RENDER.ALWAYS, multiplanarLayout: niivue.MULTIPLANAR_TYPE.GRID,
    isRadiologicalConvention: true,   // the patient's right on the left of the screen, as on the CT console
  });
  await nv.attachTo("gl");
  skipGradientsUnlessRendered();
  nv.setSliceType(nv.sliceTypeMultiplanar);
  for (const [verdict, rgb] of Object.entries(VERDICT_RGB)) {
    nv.addColormap(`trajplan_${verdict}`, { R: [rgb[0], rgb[0]], G: [rgb[1], rgb[1]], B: [rgb[2], rgb[2]],
                                             A: [255, 255], I: [0, 255] });
  }
  // a needle is drawn whole on every slice (meshThicknessOn2D is Infinity by default), and in front of
  // it: NiiVue depth-tests meshes against the 2D slice, which would hide the part of a needle behind
  // the slice plane. drawMesh3D is NiiVue 0.69's internal mesh pass (is2D last).
  const drawMesh = nv.drawMesh3D.bind(nv);
  // The label surfaces are for the 3D view only: hidden while NiiVue draws the meshes over a 2D view.
  nv.drawMesh3D = (depthTest, alpha, mvp, model, normal, is2D = false) => {
    for (const mesh of surfaceMeshes) mesh.visible = !is2D && state.showSurfaces;
    return drawMesh(is2D ? false : depthTest, alpha, mvp, model, normal, is2D);
  };
  // The 3D view shows the label surfaces and the needles; the CT's volume rendering (a block of soft
  // tissue around them in the bone window) only when asked for. drawImage3D is NiiVue 0.69's internal pass.
  const drawImage3D = nv.drawImage3D.bind(nv);
  nv.drawImage3D = (...args) => (state.volume3D ? drawImage3D(...args) : undefined);
  createNeedleMeshes();
  // a scale bar in each 2D view, on a canvas over NiiVue's, after each of its frames (NiiVue's own
  // ruler is not drawn in the radiological convention)
  const drawScene = nv.drawScene.bind(nv);
  nv.drawScene = (...args) => { const result = drawScene(...args); drawScaleBars(); return result; };
}

async function fetchBytes(path, step) {
  const response = await fetch(path, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  const bytes = await response.arrayBuffer();
  mark(step);
  return bytes;
}

// A NIfTI volume (its bytes, fetched) read by NiiVue; name tells NiiVue its format.
const readVolume = async (bytes, spec) => niivue.NVImage.loadFromUrl({ ...spec, url: spec.name, buffer: await bytes });

// The crosshair, the readout and dragging follow the mouse once the first volume is shown.
function listenToViews() {
  nv.onLocationChange = (location) => {
    state.cursor = [-location.mm[0], -location.mm[1], location.mm[2]].map((v) => Math.round(v * 10) / 10);
    showReadout("crosshair", location.mm);
    if (state.pointerDown && state.placing) state.placeView = IN_PLANE[location.axCorSag] ? location.axCorSag : null;
    else if (state.pointerDown) dragTo(location.axCorSag);
  };
  const canvas = document.getElementById("gl");
  canvas.addEventListener("mousemove", (event) => {   // the point under the mouse, without a click
    const box = canvas.getBoundingClientRect();
    const frac = nv.canvasPos2frac([(event.clientX - box.left) * canvas.width / box.width,
                                    (event.clientY - box.top) * canvas.height / box.height]);
    if (frac[0] >= 0) showReadout("mouse", nv.frac2mm(frac));
  });
  canvas.addEventListener("mouseleave", () => nv.createOnLocationChange());
  canvas.addEventListener("pointerdown", (event) => { state.pointerDown = event.button === 0; state.placeView = null; }, true);
  window.addEventListener("pointerup", finishDrag);
  nv.createOnLocationChange();
}

// The readout: LPS mm, the CT's HU and the structure of the label map at a point (NiiVue's RAS mm).
function valueAt(volume, mm) {
  const vox = volume.mm2vox([mm[0], mm[1], mm[2]]);
  if (vox.some((v, axis) => v < 0 || v >= volume.hdr.dims[axis + 1])) return null;
  return volume.getValue(vox[0], vox[1], vox[2]);
}

function showReadout(source, mm) {
  const lps = [-mm[0], -mm[1], mm[2]];
  const hu = state.ctImage ? valueAt(state.ctImage, mm) : null;
  const label = state.labelImage ? valueAt(state.labelImage, mm) : null;
  const name = !state.labelImage ? "labels loading" : label === null ? "outside" : label === 0 ? "background"
    : state.labelNames[Math.round(label)] || `label ${label}`;
  const readout = document.getElementById("cursor");
  readout.dataset.source = source;
  readout.dataset.lps = JSON.stringify(lps.map((v) => Math.round(v * 10) / 10));
  readout.dataset.hu = hu === null ? "" : String(Math.round(hu));
  readout.dataset.label = name;
  readout.textContent = `${source} LPS ${lps.map((v) => fmt(v)).join(", ")} · ` +
    `${hu === null ? "no CT" : `${Math.round(hu)} HU`} · ${name}`;
}

const VIEW_BARS_MM = [10, 20, 50, 100];

function drawScaleBars() {
  const gl = document.getElementById("gl"), overlay = document.getElementById("scale-bars");
  if (overlay.width !== gl.width || overlay.height !== gl.height) [overlay.width, overlay.height] = [gl.width, gl.height];
  const ctx = overlay.getContext("2d");
  ctx.clearRect(0, 0, overlay.width, overlay.height);
  const bars = [];
  for (const tile of nv.screenSlices) {
    if (![0, 1, 2].includes(tile.axCorSag) || !tile.fovMM || tile.fovMM.length < 2) continue;
    const [left, top, width, height] = tile.leftTopWidthHeight;
    const pxPerMm = Math.abs(width / tile.fovMM[0]);
    const mm = VIEW_BARS_MM.filter((v) => v * pxPerMm <= width / 4).pop() || VIEW_BARS_MM[0];
    const length = mm * pxPerMm, font = Math.round(12 * devicePixelRatio);
    const x = left + font, y = top + height - font;
    ctx.fillStyle = "#fff";
    ctx.fillRect(x, y, length, Math.max(3, 3 * devicePixelRatio));
    ctx.font = `${font}px sans-serif`;
    ctx.textBaseline = "bottom";
    ctx.fillText(`${mm} mm`, x, y - 2);
    bars.push({ axCorSag: tile.axCorSag, mm, px: length, x, y });
  }
  overlay.dataset.bars = JSON.stringify(bars);
}

function setWindow(name) {
  if (!state.ctImage) return;
  [state.ctImage.cal_min, state.ctImage.cal_max] = WINDOWS[name];
  refreshCt();
  for (const b of document.querySelectorAll("[data-window]")) b.classList.toggle("on", b.dataset.window === name);
}

// One connectome mesh per verdict (its colormap is the verdict's colour, its edges the needles), made once
// before the volumes are loaded: adding or removing a NiiVue mesh re-uploads every volume to the GPU.
const needleMeshes = {};

function createNeedleMeshes() {
  for (const verdict of Object.keys(VERDICT_RGB)) {
    const colormap = `trajplan_${verdict}`;
    const mesh = nv.loadConnectomeAsMesh({
      name: `needles ${verdict}`, nodeColormap: colormap, nodeColormapNegative: colormap, nodeMinColor: 1,
      nodeMaxColor: 1, nodeScale: 3, edgeColormap: colormap, edgeColormapNegative: colormap, edgeMin: 1,
      edgeMax: 1, edgeScale: 1, showLegend: false,
      nodes: { names: ["none"], prefilled: [], X: [0], Y: [0], Z: [0], Color: [1], Size: [0.001] }, edges: [0],
    });
    nv.addMesh(mesh);
    needleMeshes[verdict] = mesh;
  }
}

// The label surfaces of the 3D view, added after the first picture, without refreshing the volumes
// (NiiVue's addMesh would, once a surface); the 3D view's zoom then spans them too, as NiiVue's refresh sets it.
const surfaceMeshes = [];

async function addSurfaceMeshes() {
  const surfaces = await api("/api/surfaces");
  for (const surface of surfaces) {
    const mesh = new niivue.NVMesh(new Float32Array(surface.positions), new Uint32Array(surface.triangles),
                                   surface.name, new Uint8Array([...surface.color, 255]), surface.opacity, true, nv.gl);
    withoutRefresh(() => nv.addMesh(mesh));
    surfaceMeshes.push(mesh);
  }
  nv.furthestVertexFromOrigin = Math.max(nv.furthestVertexFromOrigin,
                                         ...surfaceMeshes.map((mesh) => mesh.furthestVertexFromOrigin));
  nv.drawScene();
}

// The share of the axial view's pixels that are not black in a frame drawn now: read back from the
// canvas (which waits until the GPU has drawn it), it tells that the CT is on screen.
function axialViewLit() {
  nv.drawScene();
  const tile = nv.screenSlices.find((slice) => slice.axCorSag === 0);
  const [left, top, width, height] = tile.leftTopWidthHeight.map(Math.round);
  const pixels = new Uint8Array(4 * width * height);
  nv.gl.readPixels(left, nv.gl.canvas.height - top - height, width, height, nv.gl.RGBA, nv.gl.UNSIGNED_BYTE, pixels);
  let lit = 0;
  for (let k = 0; k < pixels.length; k += 4) if (pixels[k] + pixels[k + 1] + pixels[k + 2] > 30) lit += 1;
  return lit / (width * height);
}

function drawNeedles() {
  const anyPoint = state.needles.length ? ras(state.needles[0].spec.tip_lps) : nv.frac2mm([0.5, 0.5, 0.5]);
  for (const [verdict, mesh] of Object.entries(needleMeshes)) {
    const shown = state.needles.filter((n) => n.result && n.result.verdict === verdict);
    const nodes = shown.flatMap((needle) => [["entry", needle.spec.entry_lps], ["tip", needle.spec.tip_lps]].map(
      ([part, point]) => {
        const [x, y, z] = ras(point);
        return { name: `${state.needles.indexOf(needle) + 1} ${part}`, x, y, z, colorValue: 1,
                 sizeValue: needle === state.selected ? 1.0 : 0.6 };
      }));
    // a mesh without a needle keeps one microscopic node (NiiVue needs a point for its extents)
    mesh.nodes = nodes.length ? nodes : [{ name: "none", x: anyPoint[0], y: anyPoint[1], z: anyPoint[2],
                                           colorValue: 1, sizeValue: 0.001 }];
    // an edge's value is its cylinder's radius (mm); its colour is the colormap's (edgeMin = edgeMax)
    mesh.edges = shown.map((_, k) => ({ first: 2 * k, second: 2 * k + 1, colorValue: shown[k].result.diameter_mm / 2 }));
    mesh.updateMesh(nv.gl);
  }
  nv.drawScene();
  showOblique();
}

// ------------------------------------------------------------------ oblique plane
// The selected needle's own plane (short axis: the gantry-tilted axial plane; long axis: the plane of the
// needle and the sacrum's long axis), resampled by the server; asked again only when something it shows
// changed, and an older answer arriving late is dropped.
const oblique = { ticket: 0, key: null, version: 0 };
const SCALE_BARS_MM = [5, 10, 20, 50, 100];

async function showOblique() {
  const figure = document.getElementById("oblique");
  if (state.drag) return;                 // asked again when the drag ends
  const needle = state.selected;
  const options = { opacity: overlayOpacity(), hidden: [...state.hiddenLabels].sort((a, b) => a - b) };
  const technique = needle ? needle.spec.technique || (needle.result && needle.result.technique) || null : null;
  const key = needle ? JSON.stringify([state.needles.indexOf(needle), needle.spec, technique, needle.result && needle.result.verdict, options]) : "";
  if (key === oblique.key) return;
  oblique.key = key;
  const ticket = ++oblique.ticket;
  const canvas = document.getElementById("oblique-canvas");
  const caption = document.getElementById("oblique-caption");
  if (!needle) {
    canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
    caption.textContent = "select a needle to see its oblique plane";
    figure.dataset.needle = "";
    return;
  }
  let answer, image;
  try {
    answer = await api("/api/oblique", { ...needle.spec, technique, view: options });
    image = new Image();
    image.src = `data:image/png;base64,${answer.png}`;
    await image.decode();
  } catch (error) {
    if (ticket === oblique.ticket) { caption.textContent = `oblique plane: ${error.message}`; oblique.key = null; }
    return;
  }
  if (ticket !== oblique.ticket) return;
  drawOblique(canvas, image, answer, needle);
  const index = state.needles.indexOf(needle);
  caption.textContent = `needle ${index + 1}, ` + (answer.technique === "short_axis"
    ? `short axis: the axial plane tilted ${fmt(answer.gantry_tilt_deg)}° (gantry tilt) through the needle`
    : "long axis: the plane of the needle and the sacrum's long axis");
  Object.assign(figure.dataset, { needle: String(index), technique: answer.technique,
                                  letters: JSON.stringify(answer.letters), version: String(++oblique.version) });
  state.oblique = answer;
}

function drawOblique(canvas, image, answer, needle) {
  const box = canvas.getBoundingClientRect();
  canvas.width = Math.round(box.width * devicePixelRatio);
  canvas.height = Math.round(box.height * devicePixelRatio);
  const ctx = canvas.getContext("2d");
  const scale = Math.min(canvas.width / answer.width, canvas.height / answer.height);
  const left = (canvas.width - answer.width * scale) / 2, top = (canvas.height - answer.height * scale) / 2;
  const at = (px) => [left + (px[0] + 0.5) * scale, top + (px[1] + 0.5) * scale];
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(image, left, top, answer.width * scale, answer.height * scale);
  const colour = `rgb(${(VERDICT_RGB[needle.result.verdict] || [200, 200, 200]).join(",")})`;
  const [entry, tip] = [at(answer.entry_px), at(answer.tip_px)];
  ctx.strokeStyle = colour;
  ctx.fillStyle = colour;
  ctx.lineWidth = Math.max(2, needle.result.diameter_mm / answer.pixel_mm * scale);
  ctx.beginPath(); ctx.moveTo(...entry); ctx.lineTo(...tip); ctx.stroke();
  ctx.beginPath(); ctx.arc(...tip, 4 * devicePixelRatio, 0, 2 * Math.PI); ctx.fill();
  const font = Math.round(14 * devicePixelRatio);
  ctx.font = `${font}px sans-serif`;
  ctx.fillStyle = "#fff";
  ctx.textAlign = "center"; ctx.textBaseline = "middle";
  const { letters } = answer;
  ctx.fillText(letters.top, canvas.width / 2, top + font);
  ctx.fillText(letters.bottom, canvas.width / 2, top + answer.height * scale - font);
  ctx.fillText(letters.left, left + font, canvas.height / 2);
  ctx.fillText(letters.right, left + answer.width * scale - font, canvas.height / 2);
  // scale bar: the longest round length under a quarter of the picture
  const mmPerCanvasPx = answer.pixel_mm / scale;
  const barMm = SCALE_BARS_MM.filter((mm) => mm / mmPerCanvasPx <= answer.width * scale / 4).pop() || SCALE_BARS_MM[0];
  const barPx = barMm / mmPerCanvasPx;
  const y = top + answer.height * scale - 2.2 * font, x = left + font;
  ctx.fillRect(x, y, barPx, Math.max(3, devicePixelRatio * 3));
  ctx.textAlign = "left"; ctx.textBaseline = "bottom";
  ctx.fillText(`${barMm} mm`, x, y - 2);
  Object.assign(canvas.dataset, { barMm: String(barMm), barPx: barPx.toFixed(1), scale: String(scale),
                                  left: String(left), top: String(top) });
}

function centreOn(point) {
  const [x, y, z] = ras(point);
  nv.scene.crosshairPos = nv.mm2frac([x, y, z]);
  nv.drawScene();
  nv.createOnLocationChange();
}

// ------------------------------------------------------------------ table
function coordinateInputs(needle, field) {
  return needle.spec[`${field}_lps`].map((value, axis) => {
    const input = el("input", { type: "number", step: "0.5", "data-field": field, "data-axis": String(axis),
                                "aria-label": `${field} ${"xyz"[axis]}` });
    input.value = String(value);
    input.addEventListener("change", () => {
      const number = Number(input.value);
      if (input.value === "" || !Number.isFinite(number)) { setStatus(`${field} ${"xyz"[axis]}: not a number`, true); return; }
      const point = [...needle.spec[`${field}_lps`]];
      point[axis] = number;
      edit(needle, { [`${field}_lps`]: point });
    });
    return input;
  });
}

function selectInput(options, value, onChange) {
  const select = el("select");
  for (const [optionValue, text] of options) select.append(el("option", { value: optionValue, text }));
  select.value = value;
  select.addEventListener("change", () => onChange(select.value));
  return select;
}

function clearanceCell(result) {
  const cell = el("td", { class: "clearance" });
  const entries = Object.entries(result.clearance_mm).sort((a, b) => a[1] - b[1]);
  entries.slice(0, SHOWN_STRUCTURES).forEach(([name, mm], k) => {
    const margin = state.margins[name];
    if (k) cell.append(el("br"));
    cell.append(el("span", { class: mm < margin ? "below" : "", "data-structure": name,
                             text: `${name} ${fmt(mm, 2)} / ${fmt(margin)}` }));
  });
  if (entries.length > SHOWN_STRUCTURES) {
    const more = el("details", {}, [el("summary", { text: `${entries.length - SHOWN_STRUCTURES} more` })]);
    for (const [name, mm] of entries.slice(SHOWN_STRUCTURES)) more.append(el("div", { text: `${name} ${fmt(mm, 2)}` }));
    cell.append(more);
  }
  return cell;
}

function renderTable() {
  const body = document.querySelector("#needles tbody");
  body.replaceChildren();
  state.needles.forEach((needle, index) => {
    const r = needle.result;
    const row = el("tr", { "data-needle": String(index), class: `${needle.pending ? "scoring" : r.verdict}` });
    if (needle === state.selected) row.classList.add("selected");
    row.addEventListener("click", (event) => {
      if (state.selected !== needle) { state.selected = needle; renderTable(); drawNeedles(); }
      if (event.target.tagName === "TD") centreOn(needle.spec.tip_lps);
    });
    const technique = selectInput([["auto", "auto"], ["short_axis", "short axis"], ["long_axis", "long axis"]],
                                  needle.spec.technique || "auto",
                                  (value) => edit(needle, { technique: value === "auto" ? null : value }));
    const gauge = selectInput([["11", "11 G"], ["13", "13 G"]], String(needle.spec.gauge),
                              (value) => edit(needle, { gauge: Number(value) }));
    const m = r.metrics;
    row.append(
      el("td", { text: String(index + 1) }),
      el("td", { class: "source", text: needle.source }),
      el("td", {}, [technique, el("div", { class: "technique", text: r.technique })]),
      el("td", { text: r.side }),
      el("td", {}, [gauge]),
      el("td", { class: "entry" }, coordinateInputs(needle, "entry")),
      el("td", { class: "tip" }, coordinateInputs(needle, "tip")),
      el("td", { class: "verdict", text: needle.pending ? "scoring…" : r.verdict }),
      el("td", { class: "reasons", text: r.reasons.join(", ") }),
      clearanceCell(r),
      el("td", { class: "breach", text: fmt(r.breach_probability.any, 3) }),
      el("td", { class: "depth", text: `${fmt(m.length_mm)} / ${fmt(m.skin_to_bone_mm)}` }),
      el("td", { class: "angles",
                 text: `${fmt(m.mediolateral_angle_deg)} / ${fmt(m.craniocaudal_angle_deg)} / ${fmt(m.gantry_tilt_deg)}` }),
      el("td", { class: "cement", text: fmt(m.cement_volume_ml, 2) }),
    );
    body.append(row);
  });
  const selected = state.selected !== null;
  for (const id of ["delete", "entry-here", "tip-here"]) document.getElementById(id).disabled = !selected;
  document.getElementById("undo").disabled = !state.undo.length;
}

// ------------------------------------------------------------------ editing
function snapshot() {
  state.undo.push({ needles: state.needles.map((n) => ({ ...n, spec: copy(n.spec) })),
                    selected: state.needles.indexOf(state.selected) });
}

async function score(needle) {
  needle.pending = true;
  state.pending += 1;
  renderTable();
  try {
    needle.result = await api("/api/evaluate", needle.spec);
    needle.source = "edited";
    setStatus(`needle ${state.needles.indexOf(needle) + 1}: ${needle.result.verdict}`);
  } catch (error) {
    setStatus(`not scored: ${error.message}`, true);
    throw error;
  } finally {
    needle.pending = false;
    state.pending -= 1;
    renderTable();
    drawNeedles();
  }
}

async function edit(needle, change) {
  snapshot();
  const previous = needle.spec;
  needle.spec = { ...needle.spec, ...change };
  try {
    await score(needle);
  } catch {
    needle.spec = previous;
    state.undo.pop();
    renderTable();
  }
}

// Dragging: a left press near a needle's entry or tip (in the plane of the view pressed) grabs that end;
// NiiVue moves the crosshair with the mouse and the end moves as much in that plane (its depth is kept);
// the needle is re-scored when the button is released.
function dragTo(view) {
  const axes = IN_PLANE[view];
  if (!axes) return;
  if (state.drag === null) state.drag = grab(axes) || false;   // the press itself: grab, or not for this press
  if (!state.drag) return;
  const { needle, field, before, pressed } = state.drag;
  const point = [...before[field]];
  for (const axis of state.drag.axes) point[axis] = Math.round((point[axis] + state.cursor[axis] - pressed[axis]) * 10) / 10;
  needle.spec = { ...needle.spec, [field]: point };
  drawNeedles();
}

function grab(axes) {
  let best = null;
  for (const needle of state.needles) {
    for (const field of ["entry_lps", "tip_lps"]) {
      const distance = Math.hypot(...axes.map((axis) => needle.spec[field][axis] - state.cursor[axis]));
      if (distance < GRAB_MM && (!best || distance < best.distance)) {
        best = { needle, field, axes, distance, before: needle.spec, pressed: [...state.cursor] };
      }
    }
  }
  if (best) state.selected = best.needle;
  return best;
}

function finishDrag() {
  const drag = state.drag;
  if (state.pointerDown && state.placing && state.placeView !== null && state.cursor) placeAt([...state.cursor]);
  state.placeView = null;
  state.pointerDown = false;
  state.drag = null;
  if (!drag) return;
  const moved = drag.needle.spec[drag.field];
  drag.needle.spec = drag.before;
  if (moved.some((value, axis) => value !== drag.before[drag.field][axis])) edit(drag.needle, { [drag.field]: moved });
  else { renderTable(); drawNeedles(); }   // a click on an end only selects the needle
}

async function addNeedle() {
  const tip = state.cursor || (state.selected ? state.selected.spec.tip_lps : [0, 0, 0]);
  await addSpec({ entry_lps: [tip[0], tip[1] + 40, tip[2]], tip_lps: [...tip], technique: null,
                  gauge: state.needles.length ? state.needles[0].spec.gauge : 11 });
}

// Placing: "place needle" then a click in a 2D view for the entry and one for the tip (each at the
// crosshair NiiVue puts there, the view's slice giving the third coordinate); Escape cancels.
function startPlacing() {
  state.placing = { entry: null };
  document.getElementById("place").classList.add("on");
  setStatus("placing: click the entry in a view (Escape cancels)");
}

function stopPlacing(text) {
  state.placing = null;
  document.getElementById("place").classList.remove("on");
  if (text) setStatus(text);
}

function placeAt(point) {
  if (!state.placing.entry) {
    state.placing.entry = point;
    setStatus(`placing: entry ${point.map((v) => fmt(v)).join(", ")}; click the tip`);
    return;
  }
  const entry = state.placing.entry;
  stopPlacing();
  const technique = document.getElementById("new-technique").value;
  addSpec({ entry_lps: entry, tip_lps: point, technique: technique === "auto" ? null : technique,
            gauge: Number(document.getElementById("new-gauge").value) });
}

async function addSpec(spec) {
  const needle = { spec, result: null, source: "edited" };
  snapshot();
  try {
    needle.result = await api("/api/evaluate", needle.spec);
  } catch (error) {
    state.undo.pop();
    setStatus(`not added: ${error.message}`, true);
    return;
  }
  state.needles.push(needle);
  state.selected = needle;
  setStatus(`needle ${state.needles.length} added: ${needle.result.verdict}`);
  renderTable();
  drawNeedles();
}

function deleteNeedle() {
  if (!state.selected) return;
  snapshot();
  state.needles.splice(state.needles.indexOf(state.selected), 1);
  state.selected = null;
  renderTable();
  drawNeedles();
}

function undo() {
  const last = state.undo.pop();
  if (!last) return;
  state.needles = last.needles;
  state.selected = last.selected >= 0 ? state.needles[last.selected] : null;
  setStatus("undone");
  renderTable();
  drawNeedles();
}

async function save() {
  if (state.pending) { setStatus("wait for the scoring to finish", true); return; }
  setStatus("saving…");
  try {
    const answer = await api("/api/save", { needles: state.needles.map((n) => n.spec) });
    state.needles = answer.needles.map(fromPlan);
    state.selected = null;
    setStatus(`saved ${answer.written.join(", ")}`);
    document.body.dataset.saved = String(Number(document.body.dataset.saved || 0) + 1);
  } catch (error) {
    setStatus(`not saved: ${error.message}`, true);
  }
  renderTable();
  drawNeedles();
}

function fromPlan(needle) {
  return { spec: { entry_lps: needle.entry_lps, tip_lps: needle.tip_lps, technique: needle.technique,
                   gauge: needle.gauge },
           result: needle, source: needle.source };
}

// ------------------------------------------------------------------ start
async function start() {
  history.replaceState(null, "", "/");   // the token stays in the cookie, not in the address bar
  const view = await api("/api/plan");
  mark("plan");
  state.margins = view.margins_mm;
  state.labelTable = view.labels;
  state.labelNames = Object.fromEntries(view.labels.map((label) => [label.value, label.name]));
  state.needles = view.needles.map(fromPlan);
  const folder = document.getElementById("folder");
  folder.textContent = `${view.plan.outcome || "planned"} · ${view.needles.length} needle(s) · scored on ${view.scored_on}`;
  renderTable();
  // the volumes are fetched while NiiVue starts; the CT is shown first, with the needles (the first
  // picture), then the labels over it, then the 3D view's surfaces
  const ctBytes = view.files.ct ? fetchBytes("/api/ct", "CT fetched") : null;
  const labelBytes = fetchBytes(`/files/${view.files.labels}`, "labels fetched");
  await startNiivue();
  mark("NiiVue ready");
  const labelSpec = { name: view.files.labels, opacity: overlayOpacity() };
  if (ctBytes) {
    state.ctImage = await readVolume(ctBytes, { name: view.files.ct.replace(/\.gz$/, ""), colormap: "gray",
                                                cal_min: WINDOWS.bone[0], cal_max: WINDOWS.bone[1] });
    mark("CT read");
    nv.addVolume(state.ctImage);
  } else {
    state.labelImage = await readVolume(labelBytes, labelSpec);
    state.labelImage.setColormapLabel(labelColormap(state.labelTable));
    nv.addVolume(state.labelImage);
  }
  listenToViews();
  drawNeedles();
  if (state.needles.length) centreOn(state.needles[0].spec.tip_lps);
  document.getElementById("add").addEventListener("click", addNeedle);
  document.getElementById("place").addEventListener("click", () => (state.placing ? stopPlacing("placing cancelled") : startPlacing()));
  window.addEventListener("keydown", (event) => { if (event.key === "Escape" && state.placing) stopPlacing("placing cancelled"); });
  document.getElementById("delete").addEventListener("click", deleteNeedle);
  document.getElementById("undo").addEventListener("click", undo);
  document.getElementById("save").addEventListener("click", save);
  document.getElementById("entry-here").addEventListener("click",
    () => state.selected && state.cursor && edit(state.selected, { entry_lps: [...state.cursor] }));
  document.getElementById("tip-here").addEventListener("click",
    () => state.selected && state.cursor && edit(state.selected, { tip_lps: [...state.cursor] }));
  for (const b of document.querySelectorAll("[data-window]")) b.addEventListener("click", () => setWindow(b.dataset.window));
  for (const id of ["show-labels", "label-opacity"]) {
    document.getElementById(id).addEventListener(id === "show-labels" ? "change" : "input", updateOverlay);
  }
  renderLegend(view.present_labels);
  document.getElementById("surfaces-3d").addEventListener("change", (event) => { state.showSurfaces = event.target.checked; nv.drawScene(); });
  document.getElementById("ct-3d").addEventListener("change", (event) => {
    state.volume3D = event.target.checked;
    if (state.volume3D) refreshCt(); else nv.drawScene();     // with the CT's gradients (above)
  });
  // the first picture: the CT and the needles in the 2D views
  document.body.dataset.picture = axialViewLit().toFixed(3);
  mark("first picture");
  if (!state.labelImage) {
    const labels = await readVolume(labelBytes, labelSpec);
    withoutRefresh(() => nv.addVolume(labels));
    state.labelImage = labels;
    updateOverlay();                      // in the colours, opacity and structures chosen by then
    nv.createOnLocationChange();          // the readout names the structure
    mark("labels");
  }
  await addSurfaceMeshes();
  mark("3D surfaces");
  // ready once the whole page is on screen: after two frames the GPU has drawn it
  await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
  mark("ready");
  document.body.dataset.ready = "1";
}

start().catch((error) => setStatus(`could not start: ${error.message}`, true));
