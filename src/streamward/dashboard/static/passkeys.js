// Passkeys (WebAuthn) in the dashboard: adding one on the security page, using one as the second
// step of a sign-in, and signing in with one alone. No inline script (the CSP): everything hangs
// off data- attributes, and options come from the server as JSON (fetched, or in a
// <script type="application/json"> element written by json_script).
//
// The server speaks the JSON forms of the WebAuthn structures (base64url strings for binary); the
// browser's API takes and gives ArrayBuffers. The conversions below are done by hand so that they
// do not depend on the newer PublicKeyCredential.parse*FromJSON / toJSON helpers.
"use strict";

(() => {
  const supported = Boolean(window.PublicKeyCredential && navigator.credentials);

  function toBytes(base64url) {
    const base64 = base64url.replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
    const binary = atob(padded);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
    return bytes.buffer;
  }

  function toBase64url(buffer) {
    const bytes = new Uint8Array(buffer);
    let binary = "";
    for (let i = 0; i < bytes.length; i += 1) binary += String.fromCharCode(bytes[i]);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function descriptors(list) {
    return (list || []).map((descriptor) => ({ ...descriptor, id: toBytes(descriptor.id) }));
  }

  function creationOptions(json) {
    return {
      ...json,
      challenge: toBytes(json.challenge),
      user: { ...json.user, id: toBytes(json.user.id) },
      excludeCredentials: descriptors(json.excludeCredentials),
    };
  }

  function requestOptions(json) {
    return { ...json, challenge: toBytes(json.challenge), allowCredentials: descriptors(json.allowCredentials) };
  }

  function common(credential) {
    return {
      id: credential.id,
      rawId: toBase64url(credential.rawId),
      type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment || undefined,
      clientExtensionResults: credential.getClientExtensionResults ? credential.getClientExtensionResults() : {},
    };
  }

  // RegistrationResponseJSON
  function registrationJSON(credential) {
    const response = credential.response;
    return {
      ...common(credential),
      response: {
        clientDataJSON: toBase64url(response.clientDataJSON),
        attestationObject: toBase64url(response.attestationObject),
        transports: response.getTransports ? response.getTransports() : [],
      },
    };
  }

  // AuthenticationResponseJSON
  function assertionJSON(credential) {
    const response = credential.response;
    return {
      ...common(credential),
      response: {
        clientDataJSON: toBase64url(response.clientDataJSON),
        authenticatorData: toBase64url(response.authenticatorData),
        signature: toBase64url(response.signature),
        userHandle: response.userHandle ? toBase64url(response.userHandle) : undefined,
      },
    };
  }

  // What went wrong, in words a person can act on.
  function message(error) {
    switch (error && error.name) {
      case "NotAllowedError":
        return "The passkey request was cancelled or timed out. Try again.";
      case "InvalidStateError":
        return "This authenticator already holds a passkey for your account.";
      case "SecurityError":
        return "Passkeys cannot be used on this address: the site must be opened at its own address, over HTTPS (or on localhost).";
      case "NotSupportedError":
        return "This authenticator does not support what the site asks for.";
      default:
        return (error && error.message) || "The passkey request failed. Try again.";
    }
  }

  async function fetchOptions(url, form) {
    const body = new FormData();
    body.append("csrf_token", form.elements.csrf_token.value);
    if (form.elements.password) body.append("password", form.elements.password.value);
    const response = await fetch(url, {
      method: "POST",
      body,
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
    let data = null;
    try {
      data = await response.json();
    } catch (error) {
      data = null;
    }
    if (!response.ok || !data || !data.publicKey) {
      const said = data && data.error && data.error.message;
      throw new Error(said || "The page has expired. Reload it and try again.");
    }
    return data;
  }

  // app.js disables a form's buttons once it is submitted (no double submit); a ceremony that
  // fails or is cancelled gives them back.
  function release(form) {
    delete form.dataset.pending;
    form.querySelectorAll("button[aria-busy]").forEach((button) => {
      button.disabled = false;
      button.removeAttribute("aria-busy");
    });
  }

  function showError(form, text) {
    const box = form.querySelector("[data-passkey-error]") || document.querySelector("[data-passkey-error]");
    if (box) {
      box.textContent = text;
      box.hidden = false;
    }
  }

  function unsupported(scope) {
    scope.querySelectorAll("[data-passkey-unsupported]").forEach((note) => { note.hidden = false; });
  }

  // Adding a passkey: <form data-passkey-register="options URL"> with name, challenge, credential.
  document.querySelectorAll("form[data-passkey-register]").forEach((form) => {
    if (!supported) {
      unsupported(form);
      form.querySelectorAll("button[type=submit]").forEach((button) => { button.disabled = true; });
      return;
    }
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        const data = await fetchOptions(form.getAttribute("data-passkey-register"), form);
        const credential = await navigator.credentials.create({ publicKey: creationOptions(data.publicKey) });
        form.elements.challenge.value = data.challenge;
        form.elements.credential.value = JSON.stringify(registrationJSON(credential));
        form.submit();
      } catch (error) {
        release(form);
        showError(form, message(error));
      }
    });
  });

  // Signing in with a passkey alone: <form data-passkey-login="options URL"> with challenge and
  // assertion; the options request opens a passwordless challenge for this browser.
  document.querySelectorAll("form[data-passkey-login]").forEach((form) => {
    form.hidden = !supported;
    if (!supported) return;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        const data = await fetchOptions(form.getAttribute("data-passkey-login"), form);
        const credential = await navigator.credentials.get({ publicKey: requestOptions(data.publicKey) });
        form.elements.challenge.value = data.challenge;
        form.elements.assertion.value = JSON.stringify(assertionJSON(credential));
        form.submit();
      } catch (error) {
        release(form);
        showError(form, message(error));
      }
    });
  });

  // The second step of a sign-in: <form data-passkey-assert="id of the options element"> whose
  // options (the login challenge's) the page carries; the challenge itself is in a cookie.
  document.querySelectorAll("form[data-passkey-assert]").forEach((form) => {
    const source = document.getElementById(form.getAttribute("data-passkey-assert"));
    if (!supported || !source) {
      unsupported(document);
      form.hidden = true;
      return;
    }
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        const options = requestOptions(JSON.parse(source.textContent));
        const credential = await navigator.credentials.get({ publicKey: options });
        form.elements.assertion.value = JSON.stringify(assertionJSON(credential));
        form.submit();
      } catch (error) {
        release(form);
        showError(form, message(error));
      }
    });
  });
})();
