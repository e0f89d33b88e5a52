// Streamward dashboard behaviour: menus, dialogs, copy buttons, role previews. No inline script
// anywhere (the CSP forbids it): everything hangs off data- attributes.
"use strict";

function closeMenus(except) {
  document.querySelectorAll("[data-menu-button]").forEach((button) => {
    const menu = document.getElementById(button.getAttribute("aria-controls"));
    if (menu && menu !== except) {
      menu.hidden = true;
      button.setAttribute("aria-expanded", "false");
    }
  });
}

document.querySelectorAll("[data-menu-button]").forEach((button) => {
  const menu = document.getElementById(button.getAttribute("aria-controls"));
  if (!menu) return;
  button.addEventListener("click", (event) => {
    event.stopPropagation();
    const open = menu.hidden;
    closeMenus(menu);
    menu.hidden = !open;
    button.setAttribute("aria-expanded", String(open));
    if (open) {
      const first = menu.querySelector("a, button");
      if (first) first.focus();
    }
  });
  menu.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      menu.hidden = true;
      button.setAttribute("aria-expanded", "false");
      button.focus();
    }
  });
  // A menu closes when keyboard focus leaves it (Tab past its last entry), not only on a click outside.
  const closeIfFocusLeft = (event) => {
    const next = event.relatedTarget;
    if (menu.hidden || !next) return;
    if (menu.contains(next) || button.contains(next)) return;
    menu.hidden = true;
    button.setAttribute("aria-expanded", "false");
  };
  menu.addEventListener("focusout", closeIfFocusLeft);
  button.addEventListener("focusout", closeIfFocusLeft);
});
document.addEventListener("click", (event) => {
  if (!event.target.closest(".menu")) closeMenus(null);
});

// Dialogs: native <dialog> gives focus trapping and Escape; we return focus to the opener.
function openDialog(dialog, opener) {
  dialog.returnFocusTo = opener;
  dialog.showModal();
  const focus = dialog.querySelector("[autofocus]") || dialog.querySelector("input, select, button");
  if (focus) focus.focus();
}
document.querySelectorAll("[data-dialog-open]").forEach((opener) => {
  opener.addEventListener("click", (event) => {
    const dialog = document.getElementById(opener.getAttribute("data-dialog-open"));
    if (!dialog) return; // a link opener then simply follows its href (the no-dialog fallback)
    event.preventDefault();
    openDialog(dialog, opener);
  });
});

// "Invite new user" in the profile and mobile menus: the dialog where this page has it, else the
// users page opens it on arrival (#invite). Without JavaScript the link leads to the invite page.
document.querySelectorAll("[data-invite-open]").forEach((link) => {
  link.addEventListener("click", (event) => {
    event.preventDefault();
    const dialog = document.getElementById("invite-dialog");
    if (!dialog) {
      window.location.assign("/organisation/users#invite");
      return;
    }
    const menu = link.closest(".menu");
    const menuButton = menu && document.querySelector(`[aria-controls="${menu.id}"]`);
    closeMenus(null);
    openDialog(dialog, menuButton || link);
  });
});
if (window.location.hash === "#invite") {
  const dialog = document.getElementById("invite-dialog");
  history.replaceState(null, "", window.location.pathname + window.location.search);
  if (dialog) openDialog(dialog, document.querySelector("[data-dialog-open='invite-dialog']"));
}
document.querySelectorAll("dialog").forEach((dialog) => {
  dialog.addEventListener("close", () => {
    if (dialog.returnFocusTo) dialog.returnFocusTo.focus();
  });
  dialog.querySelectorAll("[data-dialog-close]").forEach((button) => {
    button.addEventListener("click", () => dialog.close());
  });
});

// Copy buttons copy the value of the element they name.
document.querySelectorAll("[data-copy]").forEach((button) => {
  button.addEventListener("click", async () => {
    const source = document.getElementById(button.getAttribute("data-copy"));
    if (!source) return;
    const value = source.value !== undefined ? source.value : source.textContent;
    const label = button.textContent;
    try {
      await navigator.clipboard.writeText(value);
      button.textContent = "Copied";
    } catch (error) {
      source.select && source.select();
      button.textContent = "Press Ctrl+C";
    }
    setTimeout(() => { button.textContent = label; }, 1600);
  });
});

// Download buttons save the text of the element they name as a file (new recovery codes). Hidden
// until this script shows them: without JavaScript there is the copy button and the list itself.
document.querySelectorAll("[data-download]").forEach((button) => {
  const source = document.getElementById(button.getAttribute("data-download"));
  if (!source) return;
  button.hidden = false;
  button.addEventListener("click", () => {
    const text = source.value !== undefined ? source.value : source.textContent;
    const url = URL.createObjectURL(new Blob([text + "\n"], { type: "text/plain" }));
    const link = document.createElement("a");
    link.href = url;
    link.download = button.getAttribute("data-filename") || "download.txt";
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  });
});

// Role selects show the chosen role's permission overview (data rendered into the page as JSON by
// json_script; the select names its element in data-role-source). With data-role-current the
// overview compares: current role -> new role, and which permissions are gained and lost.
function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function permissionList(labels, className, itemClass) {
  const list = element("ul", undefined, className);
  labels.forEach((label) => list.append(element("li", label, itemClass)));
  return list;
}

function roleLabel(name, role) {
  return role && role.title && role.title !== name ? `${role.title} (${name})` : name;
}

document.querySelectorAll("[data-role-preview]").forEach((select) => {
  const target = document.getElementById(select.getAttribute("data-role-preview"));
  const data = document.getElementById(select.getAttribute("data-role-source") || "role-data");
  if (!target || !data) return;
  const roles = JSON.parse(data.textContent);
  const currentName = select.getAttribute("data-role-current");
  const render = () => {
    const role = roles[select.value];
    target.replaceChildren();
    if (!role) return;
    if (currentName !== null) {
      const current = roles[currentName];
      const compare = element("p", undefined, "role-compare");
      compare.append(
        element("span", roleLabel(currentName, current), "badge badge-neutral"),
        element("span", "→", "arrow"),
        element("span", roleLabel(select.value, role), "badge badge-neutral"),
      );
      compare.setAttribute("aria-label", `From ${roleLabel(currentName, current)} to ${roleLabel(select.value, role)}`);
      target.append(compare);
      if (select.value === currentName) {
        target.append(element("p", "This is the current role: confirming changes nothing.", "muted small"));
        return;
      }
      const before = new Set(current ? current.permissions : []);
      const after = new Set(role.permissions);
      const gained = role.permissions.filter((label) => !before.has(label));
      const lost = [...before].filter((label) => !after.has(label));
      if (gained.length) {
        target.append(element("p", `Gains ${gained.length}:`, "small"), permissionList(gained, "perm-diff", "gained"));
      }
      if (lost.length) {
        target.append(element("p", `Loses ${lost.length}:`, "small"), permissionList(lost, "perm-diff", "lost"));
      }
      if (!gained.length && !lost.length) {
        target.append(element("p", "The same permissions under another role.", "muted small"));
      }
      return;
    }
    const title = element("p");
    title.append(element("strong", roleLabel(select.value, role)), document.createTextNode(" — " + role.description));
    const audiences = element("p", "Audiences: " + (role.audiences.join(", ") || "none"), "muted small");
    target.append(title, audiences, permissionList(role.permissions, "perm-list"));
  };
  select.addEventListener("change", render);
  render();
});

// No double submit: once a form is on its way, its submit buttons are disabled until the next page.
// (Disabled after the submit event, so the clicked button's own name/value still goes with the form.)
document.querySelectorAll("form").forEach((form) => {
  form.addEventListener("submit", (event) => {
    if (form.method.toLowerCase() !== "post") return;
    if (form.dataset.pending === "1") {
      event.preventDefault();
      return;
    }
    form.dataset.pending = "1";
    setTimeout(() => {
      form.querySelectorAll("button[type=submit], button:not([type])").forEach((button) => {
        button.disabled = true;
        button.setAttribute("aria-busy", "true");
      });
    }, 0);
  });
});
// Back/forward cache: a page shown again must be usable again.
window.addEventListener("pageshow", (event) => {
  if (!event.persisted) return;
  document.querySelectorAll("form[data-pending]").forEach((form) => {
    delete form.dataset.pending;
    form.querySelectorAll("button[aria-busy]").forEach((button) => {
      button.disabled = false;
      button.removeAttribute("aria-busy");
    });
  });
});

// A link shown once (a new invitation) is selected when focused, ready to copy.
document.querySelectorAll("[data-select-on-focus]").forEach((input) => {
  input.addEventListener("focus", () => input.select());
});

// Auto-submit controls (the VOD switch) submit their form when changed.
document.querySelectorAll("[data-autosubmit]").forEach((control) => {
  control.addEventListener("change", () => control.form && control.form.requestSubmit());
});
