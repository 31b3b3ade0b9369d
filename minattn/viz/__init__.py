"""Seeing where a pixel looks: the attention explorer page.

``explore``  ``minattn.explore(module, x, image)``: one self-contained HTML page that holds the
             pooled queries and keys and computes a pixel's attention row in the browser
``page``     that page's HTML, style and script

May import: `minattn.modules` (and what they stand on). Nothing here runs a program.
"""
