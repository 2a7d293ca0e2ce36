/**
 * The JupyterLab plugin: it wires one {@link StrataLabModel} to a panel in the
 * left sidebar, a command that opens a wide panel in the main area (in the
 * command palette and the launcher), and the refresh-interval setting.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  ICommandPalette,
  MainAreaWidget,
  WidgetTracker
} from '@jupyterlab/apputils';
import { ILauncher } from '@jupyterlab/launcher';
import { ISettingRegistry } from '@jupyterlab/settingregistry';

import { strataIcon } from './icon';
import { StrataLabModel } from './model';
import { StrataLabPanel } from './panel';
import { CommandIDs } from './tokens';

const PLUGIN_ID = 'stratalab-labextension:plugin';

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description:
    'The StrataLab panel: workers, queue and jobs of a StrataLab server.',
  autoStart: true,
  optional: [ICommandPalette, ILauncher, ILayoutRestorer, ISettingRegistry],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    launcher: ILauncher | null,
    restorer: ILayoutRestorer | null,
    settings: ISettingRegistry | null
  ): void => {
    const model = new StrataLabModel({
      serverSettings: app.serviceManager.serverSettings
    });
    const tracker = new WidgetTracker<MainAreaWidget<StrataLabPanel>>({
      namespace: 'stratalab'
    });

    const sidebar = Private.createSidebar(model);
    app.shell.add(sidebar, 'left', { rank: 650 });

    app.commands.addCommand(CommandIDs.open, {
      label: 'StrataLab',
      caption: 'Open the StrataLab panel: workers, queue and jobs',
      icon: strataIcon,
      execute: () => Private.openMain(app, model, tracker)
    });
    app.commands.addCommand(CommandIDs.refresh, {
      label: 'Refresh StrataLab',
      caption: 'Ask the StrataLab server for fresh status now',
      execute: () => model.refresh()
    });

    palette?.addItem({ command: CommandIDs.open, category: 'StrataLab' });
    palette?.addItem({ command: CommandIDs.refresh, category: 'StrataLab' });
    launcher?.add({ command: CommandIDs.open, category: 'Other', rank: 1 });
    if (restorer) {
      restorer.add(sidebar, sidebar.id);
      void restorer.restore(tracker, {
        command: CommandIDs.open,
        name: () => 'stratalab'
      });
    }
    if (settings) {
      void Private.followSettings(settings, model);
    }
  }
};

export default plugin;

namespace Private {
  /** The sidebar panel (narrow columns hide themselves). */
  export function createSidebar(model: StrataLabModel): StrataLabPanel {
    const panel = new StrataLabPanel(model);
    panel.id = 'stratalab-sidebar';
    panel.title.icon = strataIcon;
    panel.title.caption = 'StrataLab';
    return panel;
  }

  /** Reveal the main-area panel, creating it the first time. */
  export async function openMain(
    app: JupyterFrontEnd,
    model: StrataLabModel,
    tracker: WidgetTracker<MainAreaWidget<StrataLabPanel>>
  ): Promise<MainAreaWidget<StrataLabPanel>> {
    let widget = tracker.currentWidget;
    if (!widget || widget.isDisposed) {
      widget = new MainAreaWidget({ content: new StrataLabPanel(model) });
      widget.id = 'stratalab-main';
      widget.title.label = 'StrataLab';
      widget.title.icon = strataIcon;
      widget.title.closable = true;
      await tracker.add(widget);
    }
    if (!widget.isAttached) {
      app.shell.add(widget, 'main');
    }
    app.shell.activateById(widget.id);
    return widget;
  }

  /** Apply the refresh interval now and whenever the user changes it. */
  export async function followSettings(
    registry: ISettingRegistry,
    model: StrataLabModel
  ): Promise<void> {
    try {
      const settings = await registry.load(PLUGIN_ID);
      const apply = () => {
        model.interval = settings.get('refreshInterval').composite as number;
      };
      apply();
      settings.changed.connect(apply);
    } catch (reason) {
      console.warn('StrataLab: could not load settings', reason);
    }
  }
}
