// Typeset every page's mathematics with the KaTeX shipped in docs/assets/katex (no network).
//
// Markdown pages: pymdownx.arithmatex (generic mode) turns each formula into \( \) or \[ \]
// (inside an .arithmatex element).
// Notebook pages: nbconvert leaves the notebooks' $...$ and $$...$$ as they are, inside
// .jp-MarkdownOutput; mkdocs-jupyter's MathJax is pointed at an empty local file
// (javascripts/no-mathjax.js), so KaTeX is the only typesetter on every page.
const MARKDOWN_DELIMITERS = [
  { left: "\\[", right: "\\]", display: true },
  { left: "\\(", right: "\\)", display: false },
];
const NOTEBOOK_DELIMITERS = [
  { left: "$$", right: "$$", display: true },
  { left: "$", right: "$", display: false },
  ...MARKDOWN_DELIMITERS,
];

function typeset() {
  // \( \) and \[ \] anywhere on the page: the content, and also the table of contents and
  // the navigation, which repeat headings as plain text (code and pre are skipped).
  renderMathInElement(document.body, { delimiters: MARKDOWN_DELIMITERS, throwOnError: false });
  // $ and $$ only inside the notebooks' Markdown cells, where they are math by construction
  for (const element of document.querySelectorAll(".jupyter-wrapper .jp-MarkdownOutput")) {
    renderMathInElement(element, { delimiters: NOTEBOOK_DELIMITERS, throwOnError: false });
  }
  // the notebook's headings in the table of contents keep their $...$ as text
  for (const element of document.querySelectorAll(".md-sidebar--secondary .md-nav__link")) {
    renderMathInElement(element, { delimiters: NOTEBOOK_DELIMITERS, throwOnError: false });
  }
}

// Material for MkDocs announces every page (also after instant loading) on document$.
if (typeof document$ !== "undefined") {
  document$.subscribe(typeset);
} else {
  document.addEventListener("DOMContentLoaded", typeset);
}
