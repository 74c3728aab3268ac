// nrkdeblur report: the viewers' behaviour, inlined into report.html. No library, no network.
// Each .viewer holds three panes (before, after, the defocus overlay); each pane holds a
// .stage laid out in the photo's pixels, which one transform places on the screen. The
// after pane is clipped to the right of the split line. 1:1 means one photo pixel per
// device pixel.
"use strict";
(function () {
  const ratio = () => window.devicePixelRatio || 1;

  class Viewer {
    constructor(el, section) {
      this.el = el;
      this.section = section;
      this.w = Number(el.dataset.w);
      this.h = Number(el.dataset.h);
      this.focus = [Number(el.dataset.fx), Number(el.dataset.fy)];
      this.stages = Array.from(el.querySelectorAll(".stage"));
      this.after = el.querySelector(".pane.after");
      this.line = el.querySelector(".split");
      this.zoom = 1;
      [this.cx, this.cy] = this.focus;
      this.split = 0.5;
      this.drag = null;
      this.listen();
      new ResizeObserver(() => this.render()).observe(el);
    }

    scale() {
      if (this.zoom === "fit") {
        return Math.min(this.el.clientWidth / this.w, this.el.clientHeight / this.h);
      }
      return this.zoom / ratio();
    }

    // keep the photo on the screen: centred where it is smaller than the view
    clamp(s, view) {
      const half = [view[0] / (2 * s), view[1] / (2 * s)];
      const size = [this.w, this.h];
      const c = [this.cx, this.cy].map((v, i) =>
        size[i] <= 2 * half[i] ? size[i] / 2 : Math.min(Math.max(v, half[i]), size[i] - half[i]));
      [this.cx, this.cy] = c;
    }

    render() {
      const vw = this.el.clientWidth, vh = this.el.clientHeight;
      if (!vw || !vh) return;
      const s = this.scale(), r = ratio();
      this.clamp(s, [vw, vh]);
      const tx = Math.round((vw / 2 - this.cx * s) * r) / r;  // on the device pixel grid
      const ty = Math.round((vh / 2 - this.cy * s) * r) / r;
      for (const stage of this.stages) {
        stage.style.transform = `translate(${tx}px, ${ty}px) scale(${s})`;
        stage.style.setProperty("--scale", String(s));  // keeps the frame's line 1 px wide
      }
      const x = Math.round(this.split * vw);
      this.after.style.clipPath = `inset(0 0 0 ${x}px)`;
      this.line.style.left = `${x}px`;
      this.el.classList.toggle("pixelated", s * r > 1.01);
      for (const b of this.section.querySelectorAll("button[data-zoom]")) {
        b.setAttribute("aria-pressed", String(b.dataset.zoom === String(this.zoom)));
      }
    }

    setZoom(zoom, at) {
      if (at) [this.cx, this.cy] = at;
      this.zoom = zoom;
      this.render();
    }

    // the photo's pixel under a point of the screen
    photoPoint(clientX, clientY) {
      const box = this.el.getBoundingClientRect(), s = this.scale();
      return [this.cx + (clientX - box.left - box.width / 2) / s, this.cy + (clientY - box.top - box.height / 2) / s];
    }

    listen() {
      this.line.addEventListener("pointerdown", (e) => {
        e.stopPropagation();
        e.preventDefault();
        this.line.setPointerCapture(e.pointerId);
        this.drag = { kind: "split" };
      });
      this.el.addEventListener("pointerdown", (e) => {
        if (e.button !== 0) return;
        e.preventDefault();
        this.el.focus({ preventScroll: true });
        this.el.setPointerCapture(e.pointerId);
        this.drag = { kind: "pan", x: e.clientX, y: e.clientY, cx: this.cx, cy: this.cy };
        this.el.classList.add("panning");
      });
      const move = (e) => {
        if (!this.drag) return;
        if (this.drag.kind === "split") {
          const box = this.el.getBoundingClientRect();
          this.split = Math.min(Math.max((e.clientX - box.left) / box.width, 0), 1);
        } else {
          const s = this.scale();
          this.cx = this.drag.cx - (e.clientX - this.drag.x) / s;
          this.cy = this.drag.cy - (e.clientY - this.drag.y) / s;
        }
        this.render();
      };
      const end = () => {
        this.drag = null;
        this.el.classList.remove("panning");
      };
      for (const target of [this.el, this.line]) {
        target.addEventListener("pointermove", move);
        target.addEventListener("pointerup", end);
        target.addEventListener("pointercancel", end);
      }
      this.el.addEventListener("dblclick", (e) => {
        if (this.zoom === "fit") this.setZoom(1, this.photoPoint(e.clientX, e.clientY));
        else this.setZoom("fit");
      });
      this.el.addEventListener("keydown", (e) => {
        const step = { ArrowLeft: -0.02, ArrowRight: 0.02 }[e.key];
        if (step === undefined) return;
        e.preventDefault();
        this.split = Math.min(Math.max(this.split + step, 0), 1);
        this.render();
      });
      for (const b of this.section.querySelectorAll("button[data-zoom]")) {
        b.addEventListener("click", () => {
          const z = b.dataset.zoom;
          if (z === "focus") this.setZoom(1, this.focus);
          else this.setZoom(z === "fit" ? "fit" : Number(z));
        });
      }
      const heat = this.section.querySelector(".heat-toggle input");
      if (heat) {
        heat.addEventListener("change", () => this.el.classList.toggle("heat-on", heat.checked));
      }
    }
  }

  // images load when their photo comes near the screen: a report of hundreds of photos
  // opens at once and fetches only what is looked at
  function load(section) {
    for (const img of section.querySelectorAll("img[data-src]")) {
      img.src = img.dataset.src;
      img.removeAttribute("data-src");
    }
  }

  const sections = Array.from(document.querySelectorAll("section.photo"));
  for (const section of sections) {
    const el = section.querySelector(".viewer");
    if (el) new Viewer(el, section);
  }
  if ("IntersectionObserver" in window) {
    const near = new IntersectionObserver((seen) => {
      for (const s of seen) {
        if (s.isIntersecting) {
          load(s.target);
          near.unobserve(s.target);
        }
      }
    }, { rootMargin: "100% 0px" });
    sections.forEach((s) => near.observe(s));
  } else {
    sections.forEach(load);
  }
})();
