"""Conditional probability distributions (CPDs) of a :class:`~hybridpgm.graphs.BayesNet` node.

Three kinds, all ``torch.nn.Module`` so their parameters train with the rest of
the network, and all subclasses of :class:`~hybridpgm.graphs.cpd_base.CPD` (parents,
binding to a node, continuous input features; importable from here too):

* :class:`Table` -- a discrete node with a conditional probability table
  :math:`p(x \\mid \\mathrm{pa}(x)) = \\theta_{\\mathrm{pa}(x), x}`, parameterised
  by logits (so gradient steps keep every row on the simplex), with an optional
  Dirichlet prior for MAP learning.
* :class:`Neural` -- a discrete node whose logits are computed by a network
  :math:`\\mathrm{logits} = f_\\phi([\\mathrm{onehot}(\\mathrm{pa}_d), \\mathrm{pa}_c, u])`
  from the one-hot discrete parents, the continuous parents and optional
  continuous *context* inputs :math:`u` that are not nodes of the graph.
* :class:`LinearGaussian` -- a continuous node
  :math:`x \\mid \\mathrm{pa}(x) \\sim \\mathcal N(b_d + w_d^\\top \\mathrm{pa}_c, \\sigma_d^2)`
  where :math:`d` is the configuration of the discrete parents (a conditional
  linear Gaussian [2]).

Every discrete CPD exposes :meth:`CPD.log_table`, the log-probability table over
(its discrete parents, itself), which is what exact inference contracts; a
continuous CPD exposes :meth:`LinearGaussian.log_density`, a table over its
discrete parents for an observed value.

**References**

[1] D. Koller, N. Friedman, *Probabilistic Graphical Models: Principles and
Techniques*, 2009 (chapter 5, local probabilistic models).

[2] S. L. Lauritzen, N. Wermuth, *Graphical models for associations between
variables, some of which are qualitative and some quantitative*, 1989.

The classes live in their own modules (:mod:`~hybridpgm.graphs.cpd_table`, :mod:`~hybridpgm.graphs.cpd_neural`,
:mod:`~hybridpgm.graphs.cpd_gaussian`) and are imported, documented and saved under this module's name
(``hybridpgm.graphs.cpd.Table``: model files written before the split load unchanged).
"""

from hybridpgm.graphs.cpd_base import CPD
from hybridpgm.graphs.cpd_gaussian import LinearGaussian
from hybridpgm.graphs.cpd_neural import Neural
from hybridpgm.graphs.cpd_table import Table

__all__ = ["CPD", "LinearGaussian", "Neural", "Table"]
