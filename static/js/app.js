// Small page behaviours with no inline script: confirm dialogs on forms that change the fleet or an experiment
// (`data-confirm` on a plain form; htmx forms use hx-confirm), and a "live" overview that refreshes itself.
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.confirm) return;
    if (!window.confirm(form.dataset.confirm)) event.preventDefault();
  }, true);
})();
