/*
 * oggmhub's JupyterLab extension: the environment's tutorials as launcher cards.
 *
 * Written by hand as a module-federation container (what `jupyter labextension build`
 * would emit), so it needs no Node.js build: JupyterLab loads it from
 * share/jupyter/labextensions/@oggmhub/tutorials, calls init() with its shared modules
 * and get("./extension") for the plugin. The plugin lists the folder that the server
 * names in the page config (oggmhubTutorials, set by oggmhub.session.lab from
 * $OGGMHUB_ENVIRONMENT: tutorials/<env>) and adds one card per notebook to the
 * launcher's "Tutorials" section, titled by the notebook's first heading.
 */
(function () {
  "use strict";
  var NAME = "@oggmhub/tutorials";
  var registry = (window._JUPYTERLAB = window._JUPYTERLAB || {});
  var scope = null;

  // the application's own copy of a shared package (the highest version it offers)
  async function shared(pkg) {
    var versions = scope && scope[pkg];
    if (!versions) throw new Error(NAME + ": JupyterLab shares no " + pkg);
    var chosen = Object.keys(versions).sort(function (a, b) {
      return a.localeCompare(b, undefined, { numeric: true });
    }).pop();
    var factory = await versions[chosen].get();
    return factory();
  }

  function title(model, fallback) {
    var cells = (model && model.content && model.content.cells) || [];
    for (var i = 0; i < cells.length; i++) {
      if (cells[i].cell_type !== "markdown") continue;
      var source = Array.isArray(cells[i].source) ? cells[i].source.join("") : String(cells[i].source);
      var match = source.match(/^\s*#+\s+(.+)$/m);
      if (match) return match[1].replace(/[*_`]/g, "").trim();
    }
    return fallback;
  }

  // "Getting started" first, then the others by file name
  function order(name) {
    return (/getting[-_ ]?started/i.test(name) ? "0 " : "1 ") + name;
  }

  function plugin(ILauncher, PageConfig, notebookIcon) {
    return {
      id: NAME + ":launcher",
      description: "The environment's tutorials as cards in the launcher.",
      autoStart: true,
      requires: [ILauncher],
      activate: function (app, launcher) {
        var folder = PageConfig.getOption("oggmhubTutorials");
        if (!folder) return;
        var contents = app.serviceManager.contents;
        contents.get(folder, { content: true }).then(function (listing) {
          var notebooks = (listing.content || []).filter(function (item) {
            return item.type === "notebook" && item.name.charAt(0) !== ".";
          }).sort(function (a, b) { return order(a.name).localeCompare(order(b.name)); });
          notebooks.forEach(function (item, rank) {
            var command = NAME + ":open:" + item.path;
            var fallback = item.name.replace(/\.ipynb$/, "").replace(/[-_]+/g, " ");
            var label = fallback;
            app.commands.addCommand(command, {
              label: function () { return label; },
              caption: "Open the tutorial " + item.path,
              icon: notebookIcon,
              execute: function () {
                return app.commands.execute("docmanager:open", { path: item.path });
              }
            });
            launcher.add({ command: command, category: "Tutorials", rank: rank });
            contents.get(item.path, { content: true }).then(function (model) {
              label = title(model, fallback);
              app.commands.notifyCommandChanged(command);
            }, function () { /* the file name stays the label */ });
          });
        }, function (error) {
          console.warn(NAME + ": no tutorials in " + folder, error);
        });
      }
    };
  }

  registry[NAME] = {
    init: function (shareScope) { scope = shareScope; },
    get: async function (module) {
      if (module !== "./extension") throw new Error(NAME + " has no module " + module);
      var launcher = await shared("@jupyterlab/launcher");
      var coreutils = await shared("@jupyterlab/coreutils");
      var ui = await shared("@jupyterlab/ui-components");
      var extension = plugin(launcher.ILauncher, coreutils.PageConfig, ui.notebookIcon);
      return function () { return { __esModule: true, default: extension }; };
    }
  };
})();
