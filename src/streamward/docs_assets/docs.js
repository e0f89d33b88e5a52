// Starts Swagger UI on the OpenAPI document the page names. A file of its own, not an inline
// script: the reference page's Content-Security-Policy allows scripts from this origin only.
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    domNode: root,
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    // No call to the public validator service (and no badge image from it).
    validatorUrl: null,
    // Tokens typed into "Authorize" live in this tab only, never in localStorage.
    persistAuthorization: false,
  });
})();
