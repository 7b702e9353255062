"""The NPWG network model: what a pod asks for, and what each delegate must be given.

Pure code, no I/O (the engine and cluster layers read files and the API and
pass them in).  One module per concept:

* `selection`: the ``k8s.v1.cni.cncf.io/networks`` annotation, both forms;
* `nad`: NetworkAttachmentDefinitions and ``clusterNetwork``/``defaultNetworks``
  resolved to delegate networks; `confdir`: CNI config files found by name or path;
* `config`: the multus configuration (``00-multus.conf``);
* `attachment`: `plan_pod`, the attachments of a pod with ifnames, CNI_ARGS,
  cni-args and capability arguments; `capabilities`: what runtimeConfig each plugin gets;
* `status`: the network-status annotation;
* `findings`, `validation`: every problem at once, with a stable code and a path.

Traps:

* Delegate configurations are `multihome.cni.config.RawObject` text, never
  dicts: edit them with ``RawObject.edit`` so plugin fields keep their bytes.
* Parsing user input never raises; it returns findings.  A plan with an
  error finding must not run: ``findings.to_cni_error(findings)``.
* Annotations and ``00-multus.conf`` were written for Go's decoder: keys match
  in any letter case (`gojson`).
"""
