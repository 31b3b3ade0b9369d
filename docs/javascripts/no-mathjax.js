// Intentionally empty. mkdocs-jupyter writes a <script> tag for MathJax on every notebook
// page; mkdocs.yml points it here (custom_mathjax_url) so that no page loads anything from
// the network. The notebooks' math is typeset by KaTeX: see katex-init.js.
