// Typeset the math that pymdownx.arithmatex marks up on the Markdown pages.
// Only .arithmatex elements: the notebook pages typeset their own $...$ math with
// the MathJax that mkdocs-jupyter loads, and the two must not touch the same text.
document$.subscribe(() => {
  for (const element of document.querySelectorAll(".arithmatex")) {
    renderMathInElement(element, {
      delimiters: [
        { left: "\\(", right: "\\)", display: false },
        { left: "\\[", right: "\\]", display: true },
      ],
    });
  }
});
